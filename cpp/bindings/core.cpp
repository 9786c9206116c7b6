// pybind11 module ensemblepp._core: the CPU kernels of the linear policies.
//
// State arrays are owned by Python (NumPy) and handed over once, when the kernel object is made;
// each step then passes only the new data, which keeps the per-call overhead small.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <optional>
#include <type_traits>
#include <stdexcept>
#include <string>
#include <vector>

#include "ensemblepp/batch.hpp"
#include "ensemblepp/distributions.hpp"
#include "ensemblepp/philox.hpp"
#include "ensemblepp/production.hpp"
#include "config_binding.hpp"

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

// Is the array's element type exactly T in native byte order?
template <class T>
bool native_dtype(const py::array& a) {
  const auto* descr = py::detail::array_descriptor_proxy(py::detail::array_proxy(a.ptr())->descr);
  static const int expected = py::dtype::of<T>().num();
  // '=' native, '|' not applicable (one byte); '<' or '>' only when it names the native order.
  const char order = descr->byteorder;
  const bool little = [] {
    const std::uint16_t one = 1;
    return *reinterpret_cast<const unsigned char*>(&one) == 1;
  }();
  const bool native_order = order == '=' || order == '|' || order == (little ? '<' : '>');
  return descr->type_num == expected && native_order;
}

void check_shape(const py::array& a, const char* name, std::initializer_list<py::ssize_t> shape) {
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
}

// A state array: exactly T, native order, C-contiguous (no conversion: the kernel writes to it).
template <class T>
T* state_array(const py::array& a, const char* name, std::initializer_list<py::ssize_t> shape,
               bool writeable) {
  if (!native_dtype<T>(a))
    throw py::type_error(std::string(name) + ": expected dtype " +
                         std::string(py::str(py::dtype::of<T>())) + " in native byte order, got " +
                         std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(name) + ": must be C-contiguous");
  if (writeable && !a.writeable()) throw std::invalid_argument(std::string(name) + ": read-only");
  check_shape(a, name, shape);
  return static_cast<T*>(const_cast<void*>(a.data()));
}

// v as the narrower floating type T, an infinity beyond T's range (C++ leaves an out-of-range
// floating conversion undefined): the kernels' bounds then refuse it by the argument's name.
template <class T, class S>
T narrow_value(S v) {
  constexpr T top = std::numeric_limits<T>::max();
  if (std::isnan(v)) return std::numeric_limits<T>::quiet_NaN();
  if (v > static_cast<S>(top)) return std::numeric_limits<T>::infinity();
  if (v < -static_cast<S>(top)) return -std::numeric_limits<T>::infinity();
  return static_cast<T>(v);
}

// A wider floating array as T, converted here rather than by NumPy's cast: that cast warns on
// overflow, and under warnings-as-errors the warning replaced the named error (and pybind11's
// converter then reported an internal error). NumPy only brings S to native order and C layout.
template <class T, class S>
py::array narrowed(const py::handle& obj, const char* name) {
  auto src = py::array_t<S, py::array::c_style | py::array::forcecast>::ensure(obj);
  if (!src) throw py::type_error(std::string(name) + ": cannot be read as an array of real numbers");
  py::array_t<T> out(std::vector<py::ssize_t>(src.shape(), src.shape() + src.ndim()));
  const S* in = src.data();
  T* o = out.mutable_data();
  for (py::ssize_t i = 0; i < src.size(); ++i) o[i] = narrow_value<T>(in[i]);
  return std::move(out);
}

// An input array as T, native byte order and C-contiguous: the array itself when it already is,
// else one visible conversion (byte order, layout, negative strides, integer or other float
// types; wider floats through narrowed()). Only real numbers (and booleans for masks) are
// accepted: complex, strings and objects raise TypeError naming the argument.
template <class T>
py::array input_array(const py::handle& obj, const char* name) {
  if (py::isinstance<py::array>(obj)) {
    py::array a = py::reinterpret_borrow<py::array>(obj);
    if (native_dtype<T>(a) && (a.flags() & py::array::c_style)) return a;
    const char kind = a.dtype().kind();
    const bool want_bool = std::is_same<T, bool>::value;
    const bool ok = want_bool ? (kind == 'b' || kind == 'i' || kind == 'u')
                              : (kind == 'b' || kind == 'i' || kind == 'u' || kind == 'f');
    if (!ok)
      throw py::type_error(std::string(name) + (want_bool ? ": expected a boolean array" : ": expected a real numeric array") +
                           ", got dtype " + std::string(py::str(a.dtype())));
    if constexpr (std::is_floating_point<T>::value) {
      if (kind == 'f' && a.itemsize() > static_cast<py::ssize_t>(sizeof(T)))
        return a.itemsize() == static_cast<py::ssize_t>(sizeof(double)) ? narrowed<T, double>(obj, name)
                                                                          : narrowed<T, long double>(obj, name);
    }
  } else {
    throw py::type_error(std::string(name) + ": expected a NumPy array, got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  }
  auto out = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(obj);
  // ensure() clears NumPy's error: rethrowing it would report an internal error.
  if (!out)
    throw py::type_error(std::string(name) + ": cannot be converted to " + std::string(py::str(py::dtype::of<T>())));
  return std::move(out);
}

const std::uint8_t* input_mask(const py::object& m, py::array& keep, py::ssize_t rows, py::ssize_t cols,
                               bool& per_row) {
  if (m.is_none()) return nullptr;
  keep = input_array<bool>(m, "mask");
  if (keep.ndim() == 1) {
    per_row = false;
    check_shape(keep, "mask", {cols});
  } else {
    per_row = true;
    check_shape(keep, "mask", {rows, cols});
  }
  return static_cast<const std::uint8_t*>(keep.data());
}

// Serialises the calls on one kernel (one batch of agents). An uncontended call takes the lock
// without touching the GIL; a contended one waits with the GIL released, so that the holder,
// which may be running without the GIL, can finish.
class KernelLock {
 public:
  explicit KernelLock(std::mutex& m) : lock_(m, std::try_to_lock) {
    if (!lock_.owns_lock()) {
      py::gil_scoped_release nogil;
      lock_.lock();
    }
  }

 private:
  std::unique_lock<std::mutex> lock_;
};

template <class T>
class Kernel {
 public:
  Kernel(const LinearConfig& cfg, py::array cov_root, py::array mean, py::object factor,
         py::array steps, py::array stream_ids)
      : cfg_(cfg), cov_root_(cov_root), mean_(mean), factor_(factor), steps_(steps), stream_ids_(stream_ids) {
    check_config(cfg_);
    if (cfg_.dtype != (sizeof(T) == 4 ? DType::float32 : DType::float64))
      throw std::invalid_argument("dtype: the configuration's dtype differs from this kernel's");
    if (mean.ndim() != 2) throw std::invalid_argument("mean: expected a (B, d) array");
    const py::ssize_t B = mean.shape(0), d = cfg_.dim, M = cfg_.ensemble_size;
    state_.n_agents = B;
    state_.cov_root = state_array<double>(cov_root, "cov_root", {B, d, d}, true);
    state_.mean = state_array<double>(mean, "mean", {B, d}, true);
    state_.factor = nullptr;
    if (!factor.is_none())
      state_.factor = state_array<T>(py::reinterpret_borrow<py::array>(factor), "factor", {B, d, M}, true);
    if (has_factor(cfg_.policy) && !state_.factor)
      throw std::invalid_argument("factor: this policy needs a (B, d, M) factor");
    state_.steps = state_array<std::uint64_t>(steps, "steps", {B}, true);
    state_.stream_ids = state_array<std::uint64_t>(stream_ids, "stream_ids", {B}, false);
    theta_ = py::array_t<T>({B, d});
  }

  void initialize(const py::array& prior_cov_root, const py::array& prior_mean, bool diagonal, long first) {
    const py::ssize_t d = cfg_.dim;
    const py::array L = input_array<double>(prior_cov_root, "prior_cov_root");
    const py::array b = input_array<double>(prior_mean, "prior_mean");
    check_shape(L, "prior_cov_root", {d, d});
    check_shape(b, "prior_mean", {d});
    if (first < 0 || first > state_.n_agents) throw std::invalid_argument("first: out of range");
    const Prior prior{static_cast<const double*>(L.data()), static_cast<const double*>(b.data()), diagonal};
    KernelLock lock(mutex_);
    py::gil_scoped_release nogil;
    ensemblepp::initialize(cfg_, state_, prior, first);
  }

  py::array_t<std::int64_t> act(const py::object& actions, const py::object& mask) {
    py::array_t<std::int64_t> out(state_.n_agents);
    act_into(actions, mask, out.mutable_data());
    return out;
  }

  // The action set (K, d) or (B, K, d) and its mask, converted once; @p actions and @p mask_keep
  // hold the converted arrays alive while @p a points into them.
  ActionSet<T> input_actions(const py::object& actions_in, const py::object& mask, py::array& actions,
                             py::array& mask_keep) const {
    const long B = state_.n_agents, d = cfg_.dim;
    actions = input_array<T>(actions_in, "actions");
    ActionSet<T> a{};
    if (actions.ndim() == 2 && actions.shape(1) == d) {
      a.n_actions = actions.shape(0);
      a.per_agent = false;
    } else if (actions.ndim() == 3 && actions.shape(0) == B && actions.shape(2) == d) {
      a.n_actions = actions.shape(1);
      a.per_agent = true;
    } else {
      throw std::invalid_argument("actions: expected shape (K, " + std::to_string(d) + ") or (" +
                                  std::to_string(B) + ", K, " + std::to_string(d) + "), got " +
                                  shape_of(actions));
    }
    a.data = static_cast<const T*>(actions.data());
    a.mask = input_mask(mask, mask_keep, B, a.n_actions, a.mask_per_agent);
    return a;
  }

  void act_into(const py::object& actions_in, const py::object& mask, std::int64_t* o) {
    const long B = state_.n_agents, d = cfg_.dim;
    py::array actions, mask_keep;
    const ActionSet<T> a = input_actions(actions_in, mask, actions, mask_keep);
    KernelLock lock(mutex_);
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
    KernelLock lock(mutex_);
    ensemblepp::sample(cfg_, state_, out.mutable_data());
    return out;
  }

  py::array_t<T> act_sphere() {
    py::array_t<T> out({state_.n_agents, static_cast<long>(cfg_.dim)});
    KernelLock lock(mutex_);
    ensemblepp::act_sphere(cfg_, state_, out.mutable_data());
    return out;
  }

  void update(const py::object& x_in, const py::object& r_in, const py::object& mask) {
    const long B = state_.n_agents, d = cfg_.dim;
    const py::array x = input_array<T>(x_in, "x");
    const py::array r = input_array<T>(r_in, "r");
    if (x.ndim() != 3 || x.shape(0) != B)
      throw std::invalid_argument("x: expected shape (" + std::to_string(B) + ", n, " +
                                  std::to_string(d) + "), got " + shape_of(x));
    const long n = x.shape(1);
    check_shape(x, "x", {B, n, d});
    check_shape(r, "r", {B, n});
    const std::uint8_t* m = nullptr;
    py::array mask_keep;
    if (!mask.is_none()) {
      mask_keep = input_array<bool>(mask, "mask");
      check_shape(mask_keep, "mask", {B, n});
      m = static_cast<const std::uint8_t*>(mask_keep.data());
    }
    const T* xp = static_cast<const T*>(x.data());
    const T* rp = static_cast<const T*>(r.data());
    KernelLock lock(mutex_);
    if (forgets()) {
      std::vector<std::int64_t> offsets(B + 1);
      for (long b = 0; b <= B; ++b) offsets[b] = b * n;
      py::gil_scoped_release nogil;
      ensemblepp::update_ragged(cfg_, state_, &forget_, xp, rp, m, offsets.data(), B * n);
      return;
    }
    if (double(B) * n * d * (d + cfg_.ensemble_size) > kReleaseGil) {
      py::gil_scoped_release nogil;
      ensemblepp::update(cfg_, state_, xp, rp, m, n);
    } else {
      ensemblepp::update(cfg_, state_, xp, rp, m, n);
    }
  }

  // Single-agent fast paths: no batch axis, scalar in and out.
  std::int64_t act1(const py::object& actions, const py::object& mask) {
    if (state_.n_agents != 1) throw std::invalid_argument("actions: this kernel holds several agents");
    std::int64_t out = -1;
    act_into(actions, mask, &out);
    return out;
  }

  void update1(const py::object& x_in, double r) {
    if (state_.n_agents != 1) throw std::invalid_argument("x: this kernel holds several agents");
    const py::array x = input_array<T>(x_in, "x");
    check_shape(x, "x", {static_cast<py::ssize_t>(cfg_.dim)});
    const T rv = narrow_value<T>(r);
    KernelLock lock(mutex_);
    if (forgets()) {
      const std::int64_t offsets[2] = {0, 1};
      ensemblepp::update_ragged(cfg_, state_, &forget_, static_cast<const T*>(x.data()), &rv, nullptr,
                                offsets, 1);
      return;
    }
    if (double(cfg_.dim) * (cfg_.dim + cfg_.ensemble_size) > kReleaseGil) {
      py::gil_scoped_release nogil;
      ensemblepp::update(cfg_, state_, static_cast<const T*>(x.data()), &rv, nullptr, 1);
    } else {
      ensemblepp::update(cfg_, state_, static_cast<const T*>(x.data()), &rv, nullptr, 1);
    }
  }

  py::array_t<T> mean() {
    const long B = state_.n_agents, d = cfg_.dim;
    py::array_t<T> out({B, d});
    KernelLock lock(mutex_);
    T* o = out.mutable_data();
    for (long i = 0; i < B * d; ++i) o[i] = static_cast<T>(state_.mean[i]);
    return out;
  }

  py::array_t<T> covariance() {
    const long d = cfg_.dim;
    py::array_t<T> out({state_.n_agents, d, d});
    KernelLock lock(mutex_);
    py::gil_scoped_release nogil;
    ensemblepp::posterior_covariance(cfg_, state_, out.mutable_data());
    return out;
  }

  py::array_t<T> factor() {
    const long d = cfg_.dim, M = cfg_.ensemble_size;
    py::array_t<T> out({state_.n_agents, d, M});
    KernelLock lock(mutex_);
    py::gil_scoped_release nogil;
    ensemblepp::posterior_factor(cfg_, state_, out.mutable_data());
    return out;
  }

  py::array theta() {
    KernelLock lock(mutex_);
    return theta_.attr("copy")();
  }

  const LinearConfig& config() const { return cfg_; }

  // ---- production loop (production.hpp) ----
  void set_forgetting(double gamma, const py::array& dirs_in, const py::array& targets_in, py::array updates) {
    const py::ssize_t d = cfg_.dim;
    if (!(gamma > 0.0 && gamma <= 1.0)) throw std::invalid_argument("forgetting: must be in (0, 1]");
    const py::array dirs = input_array<double>(dirs_in, "dirs");
    const py::array targets = input_array<double>(targets_in, "targets");
    check_shape(dirs, "dirs", {d, d});
    check_shape(targets, "targets", {d});
    std::uint64_t* up = state_array<std::uint64_t>(updates, "updates", {state_.n_agents}, true);
    KernelLock lock(mutex_);
    dirs_.assign(static_cast<const double*>(dirs.data()), static_cast<const double*>(dirs.data()) + d * d);
    targets_.assign(static_cast<const double*>(targets.data()), static_cast<const double*>(targets.data()) + d);
    updates_ = updates;
    forget_ = Forgetting{gamma, dirs_.data(), targets_.data(), up};
  }

  double forgetting() const { return forget_.gamma; }

  void update_ragged(const py::object& x_in, const py::object& r_in, const py::object& offsets_in,
                     const py::object& mask) {
    const long B = state_.n_agents, d = cfg_.dim;
    const py::array x = input_array<T>(x_in, "x");
    const py::array r = input_array<T>(r_in, "r");
    if (x.ndim() != 2 || x.shape(1) != d)
      throw std::invalid_argument("x: expected shape (N, " + std::to_string(d) + "), got " + shape_of(x));
    const long N = x.shape(0);
    check_shape(r, "r", {N});
    if (!py::isinstance<py::array>(offsets_in) ||
        py::reinterpret_borrow<py::array>(offsets_in).dtype().kind() != 'i')
      throw py::type_error("offsets: expected an integer NumPy array");
    const py::array off = input_array<std::int64_t>(offsets_in, "offsets");
    check_shape(off, "offsets", {B + 1});
    const std::uint8_t* m = nullptr;
    py::array mask_keep;
    if (!mask.is_none()) {
      mask_keep = input_array<bool>(mask, "mask");
      check_shape(mask_keep, "mask", {N});
      m = static_cast<const std::uint8_t*>(mask_keep.data());
    }
    KernelLock lock(mutex_);
    py::gil_scoped_release nogil;
    ensemblepp::update_ragged(cfg_, state_, forgets() ? &forget_ : nullptr, static_cast<const T*>(x.data()),
                              static_cast<const T*>(r.data()), m, static_cast<const std::int64_t*>(off.data()), N);
  }

  py::array_t<double> action_probabilities(const py::object& actions_in, const py::object& mask,
                                           long n_samples, bool ties_first) {
    const long B = state_.n_agents, d = cfg_.dim;
    py::array actions, mask_keep;
    const ActionSet<T> a = input_actions(actions_in, mask, actions, mask_keep);
    py::array_t<double> out({B, static_cast<long>(a.n_actions)});
    double* o = out.mutable_data();
    KernelLock lock(mutex_);
    py::gil_scoped_release nogil;
    ensemblepp::action_probabilities(cfg_, state_, a, n_samples, ties_first, o);
    return out;
  }

 private:
  bool forgets() const { return forget_.gamma < 1.0; }
  Forgetting forget_{1.0, nullptr, nullptr, nullptr};
  std::vector<double> dirs_, targets_;
  py::object updates_;
  LinearConfig cfg_;
  BatchState<T> state_{};
  py::array cov_root_, mean_;
  py::object factor_;
  py::array steps_, stream_ids_;
  py::array_t<T> theta_;
  std::mutex mutex_;
};

template <class T>
void bind_kernel(py::module_& m, const char* name) {
  py::class_<Kernel<T>>(m, name, R"pbdoc(
Batched CPU kernel of one linear policy over state arrays owned by the caller.

The arrays cov_root (B, d, d) and mean (B, d) float64, factor (B, d, M) of the kernel's dtype or None
and steps (B,) uint64 are kept
alive by the kernel and updated in place; stream_ids (B,) uint64 keys each agent's stream. Calls
on one kernel are serialised by a lock; large calls run without the GIL.
)pbdoc")
      .def(py::init<const LinearConfig&, py::array, py::array, py::object, py::array, py::array>(),
           py::arg("config"), py::arg("cov_root"), py::arg("mean"), py::arg("factor"), py::arg("steps"),
           py::arg("stream_ids"))
      .def("initialize", &Kernel<T>::initialize, py::arg("prior_cov_root"), py::arg("prior_mean"),
           py::arg("diagonal"), py::arg("first") = 0,
           "Write the prior state of agents first, ..., B-1 (float64 prior arrays, see linear.hpp).")
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
      .def("mean", &Kernel<T>::mean, "Posterior means, (B, d), in the kernel's dtype.")
      .def("covariance", &Kernel<T>::covariance, "Posterior covariances Sigma = L^T L, (B, d, d).")
      .def("factor", &Kernel<T>::factor, "The factor A (Ensemble++) or the models mu + D (ensemble sampling), (B, d, M).")
      .def("set_forgetting", &Kernel<T>::set_forgetting, py::arg("gamma"), py::arg("dirs"), py::arg("targets"),
           py::arg("updates"),
           "Forget with factor gamma toward the prior: refresh directions (d, d), targets (d,) and the "
           "agents' update counters (B,) uint64 (production.hpp).")
      .def_property_readonly("forgetting", &Kernel<T>::forgetting, "The forgetting factor gamma (1: none).")
      .def("update_ragged", &Kernel<T>::update_ragged, py::arg("x"), py::arg("r"), py::arg("offsets"),
           py::arg("mask") = py::none(),
           "Apply rows offsets[b]..offsets[b+1]-1 of x (N, d), r (N,) to agent b, in order, in one call.")
      .def("action_probabilities", &Kernel<T>::action_probabilities, py::arg("actions"),
           py::arg("mask") = py::none(), py::arg("n_samples") = 1024, py::arg("ties_first") = false,
           "Probability of each action for every agent, (B, K) float64 (production.hpp).")
      .def_property_readonly("config", &Kernel<T>::config, py::return_value_policy::copy)
      .def_property_readonly("theta", &Kernel<T>::theta, "theta used by the last act, (B, d) (a copy).");
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
  const std::uint64_t* st = state_array<std::uint64_t>(steps, "steps", {B}, false);
  const std::uint64_t* ids = state_array<std::uint64_t>(stream_ids, "stream_ids", {B}, false);
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
  bindings::bind_config(m);
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
  m.def("probability_key", &probability_key, py::arg("seed"), py::arg("step"), py::arg("stream_id"),
        "Seed of the Philox stream that action_probabilities draws from for an agent at a step.");
  m.def("max_threads", &max_threads, "Threads the CPU kernels may use.");
  m.def("set_max_threads", &set_max_threads, py::arg("n"), "Limit the CPU kernels to n threads.");
  m.attr("MAX_VECTOR_LENGTH") = kMaxVectorLength;
  m.attr("MAX_STEPS") = py::int_(kMaxSteps);
  m.attr("POLICIES") = py::dict(py::arg("ensemble") = 0, py::arg("thompson") = 1,
                                py::arg("ensemble_sampling") = 2, py::arg("ucb") = 3,
                                py::arg("greedy") = 4);
}
