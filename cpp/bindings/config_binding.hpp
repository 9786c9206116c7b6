// The Python binding of ensemblepp::LinearConfig, written once and used by the CPU modules
// (_core_generic, _core_avx2) and the CUDA module (_cuda): keyword-only construction, validated
// by check_config. Each module gets a module-local copy of the class, so that both CPU builds
// can be imported into one process.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>

#include "ensemblepp/linear_config.hpp"

namespace ensemblepp::bindings {

inline void bind_config(pybind11::module_& m) {
  namespace py = pybind11;
  py::class_<LinearConfig>(m, "LinearConfig", py::module_local(), R"pbdoc(
Hyperparameters of a batch of linear agents, shared by the CPU and CUDA kernels.

Keyword-only; the integer codes are those of ``POLICIES`` and
:func:`ensemblepp.distributions.distribution_code`; ``dtype`` is 0 for float32, 1 for float64.
Every field is checked on construction (``ValueError`` naming the field).
)pbdoc")
      .def(py::init([](int policy, int dim, int ensemble_size, int reference, int perturbation,
                       int reference_sparsity, int perturbation_sparsity, double noise_std,
                       double alpha, std::uint64_t seed, int dtype) {
             LinearConfig c;
             c.policy = static_cast<Policy>(policy);
             c.dim = dim;
             c.ensemble_size = ensemble_size;
             c.reference = static_cast<Distribution>(reference);
             c.perturbation = static_cast<Distribution>(perturbation);
             c.reference_sparsity = reference_sparsity;
             c.perturbation_sparsity = perturbation_sparsity;
             c.noise_std = noise_std;
             c.alpha = alpha;
             c.seed = seed;
             c.dtype = static_cast<DType>(dtype);
             check_config(c);
             return c;
           }),
           py::kw_only(), py::arg("policy"), py::arg("dim"), py::arg("ensemble_size") = 1,
           py::arg("reference") = 0, py::arg("perturbation") = 1, py::arg("reference_sparsity") = 1,
           py::arg("perturbation_sparsity") = 1, py::arg("noise_std") = 1.0,
           py::arg("alpha") = 1.0, py::arg("seed") = 0, py::arg("dtype") = 1)
      .def_property_readonly("policy", [](const LinearConfig& c) { return static_cast<int>(c.policy); })
      .def_readonly("dim", &LinearConfig::dim)
      .def_readonly("ensemble_size", &LinearConfig::ensemble_size)
      .def_property_readonly("reference", [](const LinearConfig& c) { return static_cast<int>(c.reference); })
      .def_property_readonly("perturbation",
                             [](const LinearConfig& c) { return static_cast<int>(c.perturbation); })
      .def_readonly("reference_sparsity", &LinearConfig::reference_sparsity)
      .def_readonly("perturbation_sparsity", &LinearConfig::perturbation_sparsity)
      .def_readonly("noise_std", &LinearConfig::noise_std)
      .def_readonly("alpha", &LinearConfig::alpha)
      .def_readonly("seed", &LinearConfig::seed)
      .def_property_readonly("dtype", [](const LinearConfig& c) { return static_cast<int>(c.dtype); });
}

}  // namespace ensemblepp::bindings
