// pybind11 module ensemblepp._cuda: host-compiled bindings of the plain CUDA API.
//
// Arrays cross this boundary as integer device pointers (from __cuda_array_interface__ or
// cupy.ndarray.data.ptr) and streams as integer handles; the Python layer
// (ensemblepp/_cuda_backend.py) checks shapes, dtypes and contiguity before calling.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "ensemblepp/cuda_api.hpp"
#include "../../cpp/bindings/config_binding.hpp"
#include "ensemblepp/cuda_probe.hpp"

#ifndef EPP_CUDA_ARCHITECTURES
#define EPP_CUDA_ARCHITECTURES "unknown"
#endif

namespace py = pybind11;
namespace epc = ensemblepp::cuda;

PYBIND11_MODULE(_cuda, m) {
  m.doc() = R"pbdoc(CUDA kernels of ensemblepp (batched linear policies).)pbdoc";
  m.def("device_count", &epc::device_count,
        "Number of visible CUDA devices; 0 without a driver or device.");
  m.def("device_error", &epc::device_error,
        "Why no device is usable (empty string when one is): no device, or the CUDA runtime's error.");
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

  m.def("probe_device", &epc::probe_device, py::arg("device"),
        py::call_guard<py::gil_scoped_release>(),
        "Run a one-thread test kernel on a device: '' when it works, else the CUDA runtime's reason.");
  m.attr("ARCHITECTURES") = EPP_CUDA_ARCHITECTURES;

  m.attr("POLICIES") = py::dict(py::arg("ensemble") = 0, py::arg("thompson") = 1,
                                py::arg("ensemble_sampling") = 2, py::arg("ucb") = 3,
                                py::arg("greedy") = 4);
  m.attr("NO_ERROR") = py::int_(epc::kNoError);

  ensemblepp::bindings::bind_config(m);

  py::class_<epc::State>(m, "State", "Device pointers of the state of B agents (0 for none).")
      .def(py::init([](std::uintptr_t cov_root, std::uintptr_t mean, std::uintptr_t factor,
                       std::uintptr_t steps, std::uintptr_t stream_ids, std::uintptr_t work,
                       long n_agents) {
             return epc::State{cov_root, mean, factor, steps, stream_ids, work, n_agents};
           }),
           py::kw_only(), py::arg("cov_root"), py::arg("mean"), py::arg("factor"), py::arg("steps"),
           py::arg("stream_ids"), py::arg("work"), py::arg("n_agents"))
      .def_readonly("cov_root", &epc::State::cov_root)
      .def_readonly("mean", &epc::State::mean)
      .def_readonly("factor", &epc::State::factor)
      .def_readonly("steps", &epc::State::steps)
      .def_readonly("stream_ids", &epc::State::stream_ids)
      .def_readonly("work", &epc::State::work)
      .def_readonly("n_agents", &epc::State::n_agents);

  m.def("workspace_size", &epc::workspace_size, py::arg("config"),
        "Scratch elements per agent the kernels need in global memory (0: shared memory suffices).");

  m.def(
      "initialize",
      [](const epc::Config& c, const epc::State& s, std::uintptr_t prior_cov_root,
         std::uintptr_t prior_mean, bool diagonal, long first, std::uintptr_t stream) {
        py::gil_scoped_release nogil;
        epc::initialize(c, s, prior_cov_root, prior_mean, diagonal, first, stream);
      },
      py::arg("config"), py::arg("state"), py::arg("prior_cov_root"), py::arg("prior_mean"),
      py::arg("diagonal"), py::arg("first"), py::arg("stream"),
      R"pbdoc(Enqueue the prior state of agents first, ..., B-1 (float64 device prior arrays).)pbdoc");

  m.def(
      "sample",
      [](const epc::Config& c, const epc::State& s, std::uintptr_t theta, bool unit_norm,
         std::uintptr_t stream) {
        py::gil_scoped_release nogil;
        epc::sample(c, s, theta, unit_norm, stream);
      },
      py::arg("config"), py::arg("state"), py::arg("theta"), py::arg("unit_norm"), py::arg("stream"),
      R"pbdoc(Enqueue one posterior draw per agent into theta (B, d), or theta / |theta|.)pbdoc");

  m.def(
      "act",
      [](const epc::Config& c, const epc::State& s, std::uintptr_t actions, long n_actions,
         bool per_agent, std::uintptr_t mask, bool mask_per_agent, std::uintptr_t choice,
         std::uintptr_t theta, std::uintptr_t saved_steps, std::uintptr_t errors,
         std::uintptr_t stream) {
        const epc::Actions a{actions, n_actions, per_agent, mask, mask_per_agent};
        py::gil_scoped_release nogil;
        epc::act(c, s, a, choice, theta, saved_steps, errors, stream);
      },
      py::arg("config"), py::arg("state"), py::arg("actions"), py::arg("n_actions"),
      py::arg("per_agent"), py::arg("mask"), py::arg("mask_per_agent"), py::arg("choice"),
      py::arg("theta"), py::arg("saved_steps"), py::arg("errors"), py::arg("stream"),
      R"pbdoc(
Enqueue sampling and argmax over the actions (K, d) or (B, K, d) into choice (B,) int64.

errors (3,) uint64 then holds the lowest agent with every action masked out, the lowest agent
with a NaN or infinite score and the lowest agent whose state gives a non-finite theta (NO_ERROR
where none); the counters are restored on error.
)pbdoc");

  m.def(
      "update",
      [](const epc::Config& c, const epc::State& s, std::uintptr_t x, std::uintptr_t r,
         std::uintptr_t mask, long n_obs, std::uintptr_t errors, std::uintptr_t stream) {
        py::gil_scoped_release nogil;
        epc::update(c, s, x, r, mask, n_obs, errors, stream);
      },
      py::arg("config"), py::arg("state"), py::arg("x"), py::arg("r"), py::arg("mask"),
      py::arg("n_obs"), py::arg("errors"), py::arg("stream"),
      R"pbdoc(
Enqueue the observations x (B, n, d), r (B, n), mask (B, n) or 0, applied in order.

errors[0] then holds the smallest key 2 i (reward i out of bounds) or 2 i + 1 (features of
observation i out of bounds: NaN, infinite or beyond 2**38 noise_std in float32), i = b n + j,
or NO_ERROR; on error nothing changes.
)pbdoc");

  // ---- production loop (issue 12) ----
  m.def("ragged_workspace_size", &epc::ragged_workspace_size, py::arg("config"), py::arg("forgets"),
        "Scratch doubles per agent update_ragged needs in global memory (0: shared memory suffices).");
  m.def("probability_workspace_size", &epc::probability_workspace_size, py::arg("config"), py::arg("n_actions"),
        "Scratch doubles per agent action_probabilities needs in global memory (0: shared memory suffices).");
  m.def(
      "update_ragged",
      [](const epc::Config& c, const epc::State& s, double gamma, std::uintptr_t dirs, std::uintptr_t targets,
         std::uintptr_t updates, std::uintptr_t x, std::uintptr_t r, std::uintptr_t mask, std::uintptr_t offsets,
         long n_rows, std::uintptr_t work, std::uintptr_t errors, std::uintptr_t stream) {
        const epc::Forgetting f{gamma, dirs, targets, updates};
        py::gil_scoped_release nogil;
        epc::update_ragged(c, s, f, x, r, mask, offsets, n_rows, work, errors, stream);
      },
      py::arg("config"), py::arg("state"), py::arg("gamma"), py::arg("dirs"), py::arg("targets"),
      py::arg("updates"), py::arg("x"), py::arg("r"), py::arg("mask"), py::arg("offsets"), py::arg("n_rows"),
      py::arg("work"), py::arg("errors"), py::arg("stream"),
      R"pbdoc(
Enqueue the logged rows x (N, d), r (N) of B agents, grouped by the checked device offsets (B + 1)
int64, with forgetting when gamma < 1 (dirs (d, d), targets (d) float64, updates (B) uint64).

errors[0] then holds the smallest key 2 i (reward of row i out of bounds) or 2 i + 1 (features of
row i), or NO_ERROR; on error nothing changes. errors[1] holds the lowest agent whose row the
update refused (a non-finite step: that agent stops there), or NO_ERROR.
)pbdoc");
  m.def(
      "action_probabilities",
      [](const epc::Config& c, const epc::State& s, std::uintptr_t actions, long n_actions, bool per_agent,
         std::uintptr_t mask, bool mask_per_agent, long n_samples, bool ties_first, std::uintptr_t out,
         std::uintptr_t work, std::uintptr_t errors, std::uintptr_t stream) {
        const epc::Actions a{actions, n_actions, per_agent, mask, mask_per_agent};
        py::gil_scoped_release nogil;
        epc::action_probabilities(c, s, a, n_samples, ties_first, out, work, errors, stream);
      },
      py::arg("config"), py::arg("state"), py::arg("actions"), py::arg("n_actions"), py::arg("per_agent"),
      py::arg("mask"), py::arg("mask_per_agent"), py::arg("n_samples"), py::arg("ties_first"), py::arg("out"),
      py::arg("work"), py::arg("errors"), py::arg("stream"),
      R"pbdoc(
Enqueue the action probabilities of every agent into out (B, K) float64 (the state is unchanged).

errors (3,) uint64 then holds the lowest agent with every action masked out, with a NaN or
infinite available action or score, and with a non-finite state (NO_ERROR where none).
)pbdoc");
}
