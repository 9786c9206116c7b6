/// @file cuda_api.hpp
/// Plain C++ API of the CUDA backend (no pybind11, no CUDA headers needed by callers).
#pragma once

#include <cstddef>
#include <string>

namespace ensemblepp::cuda {

/// Number of CUDA devices visible to this process; 0 when there is no driver or no device.
int device_count();

/// Properties of one device, used by the benchmarks to compute bandwidth fractions.
struct DeviceInfo {
  std::string name;
  int major = 0;
  int minor = 0;
  std::size_t total_memory = 0;
  double peak_bandwidth_gbs = 0.0;  ///< theoretical DRAM bandwidth, GB/s
};

/// Properties of device @p device; throws std::runtime_error on a CUDA error.
DeviceInfo device_info(int device);

}  // namespace ensemblepp::cuda
