/// @file cuda_probe.hpp
/// Whether a device can run this build's kernels (plain C++ API, no CUDA headers needed).
#pragma once

#include <string>

namespace ensemblepp::cuda {

/// Launches a one-thread kernel on device @p device, waits for it and checks what it wrote.
///
/// Returns an empty string when the device runs the kernels of this module, else the CUDA
/// runtime's reason, e.g. "no kernel image is available for execution on the device" when the
/// module has neither machine code (SASS) for the device's architecture nor PTX it can compile.
/// The calling thread's current device is restored; nothing is thrown.
std::string probe_device(int device);

}  // namespace ensemblepp::cuda
