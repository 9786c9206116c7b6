// Device queries of the CUDA backend.
#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

#include "ensemblepp/cuda_api.hpp"
#include "ensemblepp/cuda_check.hpp"

namespace ensemblepp::cuda {

int device_count() {
  int n = 0;
  // No driver or no device is a normal situation on CPU machines, not an error.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::string device_error() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err == cudaSuccess) return n > 0 ? std::string() : std::string("no CUDA device is visible");
  cudaGetLastError();
  return cudaGetErrorString(err);
}

DeviceInfo device_info(int device) {
  cudaDeviceProp p{};
  EPP_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  int mem_clock_khz = 0, bus_width = 0;
  EPP_CUDA_CHECK(cudaDeviceGetAttribute(&mem_clock_khz, cudaDevAttrMemoryClockRate, device));
  EPP_CUDA_CHECK(cudaDeviceGetAttribute(&bus_width, cudaDevAttrGlobalMemoryBusWidth, device));
  DeviceInfo info;
  info.name = p.name;
  info.major = p.major;
  info.minor = p.minor;
  info.total_memory = p.totalGlobalMem;
  // Double data rate: two transfers per clock over a bus of bus_width bits.
  info.peak_bandwidth_gbs = 2.0 * mem_clock_khz * 1e3 * (bus_width / 8.0) / 1e9;
  return info;
}

}  // namespace ensemblepp::cuda
