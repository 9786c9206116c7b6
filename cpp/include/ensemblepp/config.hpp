/// @file config.hpp
/// Macros shared by host (C++) and device (CUDA) code.
#pragma once

#if defined(__CUDACC__)
#define EPP_HD __host__ __device__ __forceinline__
#else
#define EPP_HD inline
#endif
