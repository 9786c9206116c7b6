// pybind11 module ensemblepp._cuda: host-compiled bindings of the plain CUDA API.
#include <pybind11/pybind11.h>

#include "ensemblepp/cuda_api.hpp"

namespace py = pybind11;
namespace epc = ensemblepp::cuda;

PYBIND11_MODULE(_cuda, m) {
  m.doc() = R"pbdoc(CUDA kernels of ensemblepp (batched linear policies).)pbdoc";
  m.def("device_count", &epc::device_count,
        "Number of visible CUDA devices; 0 without a driver or device.");
  m.def(
      "device_info",
      [](int device) {
        const epc::DeviceInfo i = epc::device_info(device);
        py::dict d;
        d["name"] = i.name;
        d["compute_capability"] = py::make_tuple(i.major, i.minor);
        d["total_memory"] = i.total_memory;
        d["peak_bandwidth_gbs"] = i.peak_bandwidth_gbs;
        return d;
      },
      py::arg("device") = 0, "Name, compute capability, memory and peak DRAM bandwidth of a device.");
}
