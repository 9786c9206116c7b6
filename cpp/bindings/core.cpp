// pybind11 module ensemblepp._core: the CPU kernels of the linear policies.
//
// State arrays are owned by Python (NumPy) and handed over once, when the kernel object is made;
// each step then passes only the new data, which keeps the per-call overhead small.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "ensemblepp/batch.hpp"
#include "ensemblepp/distributions.hpp"
#include "ensemblepp/philox.hpp"

namespace py = pybind11;
using namespace ensemblepp;

namespace {

// Work (multiply-adds) above which the GIL is released around a call.
constexpr double kReleaseGil = 2e4;

std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

template <class T>
T* checked(const py::array& a, const char* name, std::initializer_list<py::ssize_t> shape,
           bool writeable) {
  static const int expected = py::dtype::of<T>().num();
  if (py::detail::array_proxy(a.ptr())->descr == nullptr ||
      py::detail::array_descriptor_proxy(py::detail::array_proxy(a.ptr())->descr)->type_num != expected)
    throw py::type_error(std::string(name) + ": expected dtype " +
                         std::string(py::str(py::dtype::of<T>())) + ", got " +
                         std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(name) + ": must be C-contiguous");
  if (writeable && !a.writeable()) throw std::invalid_argument(std::string(name) + ": read-only");
  bool ok = static_cast<size_t>(a.ndim()) == shape.size();
  size_t i = 0;
  for (py::ssize_t n : shape) ok = ok && a.shape(i++) == n;
  if (!ok) {
    std::string want = "(";
    i = 0;
    for (py::ssize_t n : shape) want += (i++ ? ", " : "") + std::to_string(n);
    throw std::invalid_argument(std::string(name) + ": expected shape " + want +
                                (shape.size() == 1 ? ",)" : ")") + ", got " + shape_of(a));
  }
  return static_cast<T*>(const_cast<void*>(a.data()));
}

const std::uint8_t* checked_mask(const py::object& m, const char* name, py::ssize_t rows,
                                 py::ssize_t cols, bool& per_row) {
  if (m.is_none()) return nullptr;
  py::array a = py::reinterpret_borrow<py::array>(m);
  if (a.ndim() == 1) {
    per_row = false;
    return checked<bool>(a, name, {cols}, false) ? reinterpret_cast<const std::uint8_t*>(a.data())
                                                 : nullptr;
  }
  per_row = true;
  checked<bool>(a, name, {rows, cols}, false);
  return reinterpret_cast<const std::uint8_t*>(a.data());
}

template <class T>
class Kernel {
 public:
  Kernel(int policy, int dim, int ensemble_size, int reference, int perturbation,
         int reference_sparsity, int perturbation_sparsity, double noise_std, double alpha,
         std::uint64_t seed, py::array mu, py::array cov, py::object factor, py::array steps,
         py::array stream_ids)
      : mu_(mu), cov_(cov), factor_(factor), steps_(steps), stream_ids_(stream_ids) {
    cfg_.policy = static_cast<Policy>(policy);
    cfg_.dim = dim;
    cfg_.ensemble_size = ensemble_size;
    cfg_.reference = static_cast<Distribution>(reference);
    cfg_.perturbation = static_cast<Distribution>(perturbation);
    cfg_.reference_sparsity = reference_sparsity;
    cfg_.perturbation_sparsity = perturbation_sparsity;
    cfg_.noise_std = noise_std;
    cfg_.alpha = alpha;
    cfg_.seed = seed;
    if (dim < 1 || dim > kMaxVectorLength)
      throw std::invalid_argument("dim: must be in [1, " + std::to_string(kMaxVectorLength) + "]");
    if (ensemble_size < 1 || ensemble_size > kMaxVectorLength)
      throw std::invalid_argument("ensemble_size: must be in [1, " +
                                  std::to_string(kMaxVectorLength) + "]");
    if (mu.ndim() != 2) throw std::invalid_argument("mu: expected a (B, d) array");
    const py::ssize_t B = mu.shape(0), d = dim, M = ensemble_size;
    state_.n_agents = B;
    state_.mu = checked<T>(mu, "mu", {B, d}, true);
    state_.cov = checked<T>(cov, "cov", {B, d, d}, true);
    state_.factor = nullptr;
    if (!factor.is_none())
      state_.factor = checked<T>(py::reinterpret_borrow<py::array>(factor), "factor", {B, d, M}, true);
    if ((cfg_.policy == Policy::ensemble || cfg_.policy == Policy::ensemble_sampling) &&
        !state_.factor)
      throw std::invalid_argument("factor: this policy needs a (B, d, M) factor");
    state_.steps = checked<std::uint64_t>(steps, "steps", {B}, true);
    state_.stream_ids = checked<std::uint64_t>(stream_ids, "stream_ids", {B}, false);
    theta_ = py::array_t<T>({B, d});
  }

  py::array_t<std::int64_t> act(const py::array& actions, const py::object& mask) {
    py::array_t<std::int64_t> out(state_.n_agents);
    act_into(actions, mask, out.mutable_data());
    return out;
  }

  void act_into(const py::array& actions, const py::object& mask, std::int64_t* o) {
    const long B = state_.n_agents, d = cfg_.dim;
    ActionSet<T> a{};
    if (actions.ndim() == 2) {
      a.n_actions = actions.shape(0);
      a.data = checked<T>(actions, "actions", {a.n_actions, d}, false);
      a.per_agent = false;
    } else if (actions.ndim() == 3) {
      a.n_actions = actions.shape(1);
      a.data = checked<T>(actions, "actions", {B, a.n_actions, d}, false);
      a.per_agent = true;
    } else {
      throw std::invalid_argument("actions: expected shape (K, " + std::to_string(d) +
                                  ") or (B, K, " + std::to_string(d) + "), got " +
                                  shape_of(actions));
    }
    a.mask = checked_mask(mask, "mask", B, a.n_actions, a.mask_per_agent);
    T* th = static_cast<T*>(theta_.mutable_data());
    if (double(B) * a.n_actions * d > kReleaseGil) {
      py::gil_scoped_release nogil;
      ensemblepp::act(cfg_, state_, a, o, th);
    } else {
      ensemblepp::act(cfg_, state_, a, o, th);
    }
  }

  py::array_t<T> sample() {
    py::array_t<T> out({state_.n_agents, static_cast<long>(cfg_.dim)});
    ensemblepp::sample(cfg_, state_, out.mutable_data());
    return out;
  }

  py::array_t<T> act_sphere() {
    py::array_t<T> out({state_.n_agents, static_cast<long>(cfg_.dim)});
    ensemblepp::act_sphere(cfg_, state_, out.mutable_data());
    return out;
  }

  void update(const py::array& x, const py::array& r, const py::object& mask) {
    const long B = state_.n_agents, d = cfg_.dim;
    if (x.ndim() != 3 || x.shape(0) != B)
      throw std::invalid_argument("x: expected shape (B, n, " + std::to_string(d) + "), got " +
                                  shape_of(x));
    const long n = x.shape(1);
    const T* xp = checked<T>(x, "x", {B, n, d}, false);
    const T* rp = checked<T>(r, "r", {B, n}, false);
    const std::uint8_t* m = nullptr;
    if (!mask.is_none()) {
      py::array ma = py::reinterpret_borrow<py::array>(mask);
      m = reinterpret_cast<const std::uint8_t*>(checked<bool>(ma, "mask", {B, n}, false));
    }
    if (double(B) * n * d * (d + cfg_.ensemble_size) > kReleaseGil) {
      py::gil_scoped_release nogil;
      ensemblepp::update(cfg_, state_, xp, rp, m, n);
    } else {
      ensemblepp::update(cfg_, state_, xp, rp, m, n);
    }
  }

  // Single-agent fast paths: no batch axis, scalar in and out.
  std::int64_t act1(const py::array& actions, const py::object& mask) {
    if (state_.n_agents != 1) throw std::invalid_argument("actions: this kernel holds several agents");
    std::int64_t out = -1;
    act_into(actions, mask, &out);
    return out;
  }

  void update1(const py::array& x, double r) {
    const long d = cfg_.dim;
    const T* xp = checked<T>(x, "x", {d}, false);
    const T rv = static_cast<T>(r);
    if (state_.n_agents != 1) throw std::invalid_argument("x: this kernel holds several agents");
    ensemblepp::update(cfg_, state_, xp, &rv, nullptr, 1);
  }

  py::array theta() const { return theta_; }

 private:
  LinearConfig cfg_;
  BatchState<T> state_{};
  py::array mu_, cov_;
  py::object factor_;
  py::array steps_, stream_ids_;
  py::array_t<T> theta_;
};

template <class T>
void bind_kernel(py::module_& m, const char* name) {
  py::class_<Kernel<T>>(m, name, R"pbdoc(
Batched CPU kernel of one linear policy over state arrays owned by the caller.

The arrays mu (B, d), cov (B, d, d), factor (B, d, M) or None and steps (B,) uint64 are kept
alive by the kernel and updated in place; stream_ids (B,) uint64 keys each agent's stream.
)pbdoc")
      .def(py::init<int, int, int, int, int, int, int, double, double, std::uint64_t, py::array,
                    py::array, py::object, py::array, py::array>(),
           py::arg("policy"), py::arg("dim"), py::arg("ensemble_size"), py::arg("reference"),
           py::arg("perturbation"), py::arg("reference_sparsity"), py::arg("perturbation_sparsity"),
           py::arg("noise_std"), py::arg("alpha"), py::arg("seed"), py::arg("mu"), py::arg("cov"),
           py::arg("factor"), py::arg("steps"), py::arg("stream_ids"))
      .def("act", &Kernel<T>::act, py::arg("actions"), py::arg("mask") = py::none(),
           "Index of the chosen action of every agent, (B,) int64.")
      .def("act1", &Kernel<T>::act1, py::arg("actions"), py::arg("mask") = py::none(),
           "Index of the chosen action of a single agent.")
      .def("act_sphere", &Kernel<T>::act_sphere, "Best unit-norm action of every agent, (B, d).")
      .def("sample", &Kernel<T>::sample, "One posterior draw per agent, (B, d).")
      .def("update", &Kernel<T>::update, py::arg("x"), py::arg("r"), py::arg("mask") = py::none(),
           "Apply observations x (B, n, d), r (B, n) in order; mask (B, n) selects those seen.")
      .def("update1", &Kernel<T>::update1, py::arg("x"), py::arg("r"),
           "Apply one observation to a single agent.")
      .def_property_readonly("theta", &Kernel<T>::theta, "theta used by the last act, (B, d).");
}

py::array_t<double> draw_matrix(int dist, int n, int sparsity, double scale, std::uint64_t seed,
                                const py::array& steps, long count, const py::array& stream_ids) {
  if (n < 1 || n > kMaxVectorLength)
    throw std::invalid_argument("n: must be in [1, " + std::to_string(kMaxVectorLength) + "]");
  if (count < 0) throw std::invalid_argument("count: must be >= 0");
  if (dist < 0 || dist > 4) throw std::invalid_argument("dist: unknown distribution code");
  if (dist == static_cast<int>(Distribution::sparse) && (sparsity < 1 || sparsity > n))
    throw std::invalid_argument("sparsity: must be in [1, n]");
  if (steps.ndim() != 1) throw std::invalid_argument("steps: expected a 1-d uint64 array");
  const long B = steps.shape(0);
  const std::uint64_t* st = checked<std::uint64_t>(steps, "steps", {B}, false);
  const std::uint64_t* ids = checked<std::uint64_t>(stream_ids, "stream_ids", {B}, false);
  for (long b = 0; b < B; ++b)
    if (st[b] >= kMaxSteps || kMaxSteps - st[b] < static_cast<std::uint64_t>(count))
      throw std::invalid_argument("steps: draws past 2**48 for stream " + std::to_string(b));
  py::array_t<double> out({B, count, static_cast<long>(n)});
  double* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    for (long b = 0; b < B; ++b)
      for (long i = 0; i < count; ++i) {
        const Stream s{seed, st[b] + static_cast<std::uint64_t>(i), ids[b]};
        draw<double>(static_cast<Distribution>(dist), n, sparsity, scale, s, o + (b * count + i) * n);
      }
  }
  return out;
}

}  // namespace

#ifndef EPP_MODULE_NAME
#define EPP_MODULE_NAME _core_generic
#endif

PYBIND11_MODULE(EPP_MODULE_NAME, m) {
  m.doc() = R"pbdoc(CPU kernels of ensemblepp (C++/Eigen): Philox draws and linear policies.)pbdoc";
  bind_kernel<double>(m, "Kernel64");
  bind_kernel<float>(m, "Kernel32");
  m.def("draw_matrix", &draw_matrix, py::arg("dist"), py::arg("n"), py::arg("sparsity"),
        py::arg("scale"), py::arg("seed"), py::arg("steps"), py::arg("count"),
        py::arg("stream_ids"),
        R"pbdoc(
Draws (B, count, n): for stream b, the draws at steps steps[b], steps[b] + 1, ...

Row b uses the Philox stream (seed, stream_ids[b]) (uint64 arrays of length B). The result is float64; the float32 policies
draw the same numbers and round them.
)pbdoc");
  m.def(
      "philox4x32_10",
      [](std::array<std::uint32_t, 4> ctr, std::array<std::uint32_t, 2> key) {
        Block4 c{{ctr[0], ctr[1], ctr[2], ctr[3]}};
        Block4 r = philox4x32_10(c, key[0], key[1]);
        return std::array<std::uint32_t, 4>{r.v[0], r.v[1], r.v[2], r.v[3]};
      },
      py::arg("counter"), py::arg("key"), "One Philox4x32-10 block (for known-answer tests).");
  m.def("max_threads", &max_threads, "Threads the CPU kernels may use.");
  m.def("set_max_threads", &set_max_threads, py::arg("n"), "Limit the CPU kernels to n threads.");
  m.attr("MAX_VECTOR_LENGTH") = kMaxVectorLength;
  m.attr("MAX_STEPS") = py::int_(kMaxSteps);
  m.attr("POLICIES") = py::dict(py::arg("ensemble") = 0, py::arg("thompson") = 1,
                                py::arg("ensemble_sampling") = 2, py::arg("ucb") = 3,
                                py::arg("greedy") = 4);
}
