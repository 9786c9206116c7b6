// Device probe: one tiny kernel compiled for the same architectures as the linear kernels, so a
// GPU that cannot run them is found before the first real launch (see cuda_probe.hpp).
#include <cuda_runtime_api.h>

#include <string>

#include "ensemblepp/cuda_probe.hpp"

namespace ensemblepp::cuda {

namespace {

constexpr int kProbeValue = 0x5eed;

__global__ void probe_kernel(int* out) { *out = kProbeValue; }

std::string describe(const char* step, cudaError_t err) {
  return std::string(step) + ": " + cudaGetErrorString(err);
}

}  // namespace

std::string probe_device(int device) {
  int previous = -1;
  if (cudaGetDevice(&previous) != cudaSuccess) previous = -1;
  cudaGetLastError();
  std::string why;
  int* value = nullptr;
  cudaError_t err = cudaSetDevice(device);
  if (err != cudaSuccess) {
    why = describe("selecting the device", err);
  } else if ((err = cudaMalloc(&value, sizeof(int))) != cudaSuccess) {
    why = describe("allocating device memory", err);
    value = nullptr;
  } else {
    probe_kernel<<<1, 1>>>(value);
    err = cudaGetLastError();
    if (err == cudaSuccess) err = cudaDeviceSynchronize();
    int host = 0;
    if (err == cudaSuccess) err = cudaMemcpy(&host, value, sizeof(int), cudaMemcpyDeviceToHost);
    if (err != cudaSuccess) {
      why = describe("launching a kernel", err);
    } else if (host != kProbeValue) {
      why = "a test kernel ran but did not write its result";
    }
  }
  if (value != nullptr) cudaFree(value);
  cudaGetLastError();  // a failed probe must not leave a sticky error for the next call
  if (previous >= 0) cudaSetDevice(previous);
  return why;
}

}  // namespace ensemblepp::cuda
