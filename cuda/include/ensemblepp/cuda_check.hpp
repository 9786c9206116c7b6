/// @file cuda_check.hpp
/// Error checking for CUDA runtime calls and kernel launches.
#pragma once

#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

/// Throws std::runtime_error with file and line when a CUDA runtime call fails.
#define EPP_CUDA_CHECK(call)                                                            \
  do {                                                                                  \
    const cudaError_t epp_err_ = (call);                                                \
    if (epp_err_ != cudaSuccess)                                                        \
      throw std::runtime_error(std::string("CUDA error at ") + __FILE__ + ":" +         \
                               std::to_string(__LINE__) + ": " + cudaGetErrorString(epp_err_)); \
  } while (0)

/// Checks the launch of the kernel just issued (asynchronous errors surface at the next sync).
#define EPP_CUDA_CHECK_LAUNCH() EPP_CUDA_CHECK(cudaGetLastError())
