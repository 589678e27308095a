// The forward passes of lskd.losses._FusedKD for float32 CPU logits, one row at a time.
//
// The eager loss makes about twenty passes over each [rows, V] chunk, and at small V its chunks do not fit
// in the core's cache, so memory traffic, not arithmetic, sets its cost. Here each row is read while it
// stays in L1/L2: one pass for the row maxima, one that evaluates the three exponentials (student,
// tempered student, teacher) and every row sum, one that normalises. The row statistics come out in the
// layout of the eager passes (lskd/losses.py), so the float64 combination and the backward are shared.
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace {

using Vec = at::vec::Vectorized<float>;

// Vectors summed in float32 lanes before their total joins the row's float64 sum: short float32 runs
// keep every sum exact to float32 at any V, which the KL at T = 64 needs.
constexpr int64_t kBlockVectors = 16;

float lane_max(const Vec& v) {
  float lanes[Vec::size()];
  v.store(lanes);
  return *std::max_element(lanes, lanes + Vec::size());
}

double lane_sum(const Vec& v) {
  float lanes[Vec::size()];
  v.store(lanes);
  double total = 0;
  for (int i = 0; i < Vec::size(); ++i) total += lanes[i];
  return total;
}

struct Row {
  const float* student;
  const float* teacher;  // null for a top-k teacher, whose terms the caller computes
  float* probs;          // softmax(s); null without a hard target
  float* second;         // p_T - q with a full teacher, p_T without one; null when not needed
  float* teacher_exp;    // scratch: exp(t/T - max)
};

struct Sums {
  double plain = 0, tempered = 0, teacher = 0, teacher_dot = 0, student_dot = 0, logits = 0;
};

void row_passes(const Row& row, int64_t vocab, float inv_temperature, bool shared, double* stats, int64_t rows) {
  const int64_t width = Vec::size();
  const int64_t body = vocab - vocab % width;
  const float* s = row.student;
  const float* t = row.teacher;
  const bool plain = row.probs != nullptr;

  Vec student_max(-std::numeric_limits<float>::infinity()), teacher_max = student_max;
  for (int64_t i = 0; i < body; i += width) {
    student_max = at::vec::maximum(student_max, Vec::loadu(s + i));
    if (t) teacher_max = at::vec::maximum(teacher_max, Vec::loadu(t + i));
  }
  float peak = lane_max(student_max), teacher_peak = lane_max(teacher_max);
  for (int64_t i = body; i < vocab; ++i) {
    peak = std::max(peak, s[i]);
    if (t) teacher_peak = std::max(teacher_peak, t[i]);
  }
  // max(x·c) = max(x)·c for c > 0: rounding keeps the order of the entries.
  const float tempered_peak = peak * inv_temperature, teacher_tempered_peak = teacher_peak * inv_temperature;

  // exp(s - max) is needed apart from exp(s/T - max/T) only when T != 1; with T = 1 both are p.
  const bool separate_plain = plain && !shared;
  float* tempered_out = shared ? row.probs : row.second;
  Sums sums;
  const Vec v_peak(peak), v_tempered_peak(tempered_peak), v_teacher_peak(teacher_tempered_peak);
  const Vec v_inv(inv_temperature), zero(0.f);
  for (int64_t block = 0; block < body; block += kBlockVectors * width) {
    Vec plain_sum(0.f), tempered_sum(0.f), teacher_sum(0.f), teacher_dot(0.f), student_dot(0.f), logit_sum(0.f);
    const int64_t end = std::min(body, block + kBlockVectors * width);
    for (int64_t i = block; i < end; i += width) {
      const Vec x = Vec::loadu(s + i);
      logit_sum += x;
      const Vec tempered = x * v_inv;
      const Vec tempered_exp = (tempered - v_tempered_peak).exp_u20();
      tempered_sum += tempered_exp;
      if (tempered_out) tempered_exp.store(tempered_out + i);
      if (separate_plain) {
        const Vec e = (x - v_peak).exp_u20();
        plain_sum += e;
        e.store(row.probs + i);
      }
      if (t) {
        const Vec y = Vec::loadu(t + i) * v_inv;
        const Vec teacher_exp = (y - v_teacher_peak).exp_u20();
        teacher_sum += teacher_exp;
        // A zero teacher weight times a -inf (masked) logit counts as 0, as nansum does in the eager loss.
        const Vec live = teacher_exp > zero;
        teacher_dot += Vec::blendv(zero, teacher_exp * y, live);
        student_dot += Vec::blendv(zero, teacher_exp * tempered, live);
        teacher_exp.store(row.teacher_exp + i);
      }
    }
    sums.tempered += lane_sum(tempered_sum);
    sums.logits += lane_sum(logit_sum);
    if (separate_plain) sums.plain += lane_sum(plain_sum);
    if (t) {
      sums.teacher += lane_sum(teacher_sum);
      sums.teacher_dot += lane_sum(teacher_dot);
      sums.student_dot += lane_sum(student_dot);
    }
  }
  for (int64_t i = body; i < vocab; ++i) {
    const float x = s[i], tempered = x * inv_temperature;
    const float tempered_exp = std::exp(tempered - tempered_peak);
    sums.logits += x;
    sums.tempered += tempered_exp;
    if (tempered_out) tempered_out[i] = tempered_exp;
    if (separate_plain) {
      const float e = std::exp(x - peak);
      sums.plain += e;
      row.probs[i] = e;
    }
    if (t) {
      const float y = t[i] * inv_temperature, teacher_exp = std::exp(y - teacher_tempered_peak);
      sums.teacher += teacher_exp;
      if (teacher_exp > 0) {
        sums.teacher_dot += teacher_exp * y;
        sums.student_dot += teacher_exp * tempered;
      }
      row.teacher_exp[i] = teacher_exp;
    }
  }
  if (shared) sums.plain = sums.tempered;

  const float plain_scale = 1.0 / sums.plain, tempered_scale = 1.0 / sums.tempered;
  const float teacher_scale = t ? 1.0 / sums.teacher : 0.f;
  const Vec v_plain(plain_scale), v_tempered(tempered_scale), v_teacher(teacher_scale);
  for (int64_t i = 0; i < body; i += width) {
    if (separate_plain) (Vec::loadu(row.probs + i) * v_plain).store(row.probs + i);
    if (tempered_out) {
      const Vec p = Vec::loadu(tempered_out + i) * v_tempered;
      if (tempered_out != row.second) p.store(tempered_out + i);
      if (row.second) (t ? p - Vec::loadu(row.teacher_exp + i) * v_teacher : p).store(row.second + i);
    }
  }
  for (int64_t i = body; i < vocab; ++i) {
    if (separate_plain) row.probs[i] *= plain_scale;
    if (tempered_out) {
      const float p = tempered_out[i] * tempered_scale;
      if (tempered_out != row.second) tempered_out[i] = p;
      if (row.second) row.second[i] = t ? p - row.teacher_exp[i] * teacher_scale : p;
    }
  }

  // (peak, largest probability, probability sum) per distribution, as the eager softmax statistics: here
  // the sums are of exp(x - peak), whose largest term is 1. The dot products are over the teacher's
  // unnormalised weights; the combination divides them by the teacher's sum, as it does the eager ones.
  const double values[13] = {tempered_peak, 1, sums.tempered, peak, 1, sums.plain, teacher_tempered_peak, 1,
                             sums.teacher, 0, sums.logits, sums.student_dot, sums.teacher_dot};
  for (int k = 0; k < 13; ++k)
    if (k != 9) stats[k * rows] = values[k];  // row 9, the gold logit, is the caller's
}

}  // namespace

void kd_rows(const at::Tensor& student, const c10::optional<at::Tensor>& teacher, double temperature,
             const c10::optional<at::Tensor>& probs, const c10::optional<at::Tensor>& second, at::Tensor& stats) {
  const int64_t rows = student.size(0), vocab = student.size(1);
  const float* s = student.data_ptr<float>();
  const float* t = teacher ? teacher->data_ptr<float>() : nullptr;
  float* p = probs ? probs->data_ptr<float>() : nullptr;
  float* d = second ? second->data_ptr<float>() : nullptr;
  double* out = stats.data_ptr<double>();
  const bool shared = p && temperature == 1.0;
  const float inv_temperature = 1.0 / temperature;
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / vocab);
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> teacher_exp(t ? vocab : 0);
    for (int64_t r = begin; r < end; ++r) {
      const Row row{s + r * vocab, t ? t + r * vocab : nullptr, p ? p + r * vocab : nullptr,
                    d ? d + r * vocab : nullptr, teacher_exp.data()};
      row_passes(row, vocab, inv_temperature, shared, out + r, rows);
    }
  });
}

// The backward's one pass: x <- scale·x - shift + y_scale·y per row, in place (x: the student's p or,
// without a hard target, D; y: D beside p, or none). The eager backward takes three passes for this.
void combine_rows(at::Tensor& x, const at::Tensor& scale, const c10::optional<at::Tensor>& shift,
                  const c10::optional<at::Tensor>& y, const c10::optional<at::Tensor>& y_scale) {
  const int64_t rows = x.size(0), vocab = x.size(1);
  float* xs = x.data_ptr<float>();
  const float* ys = y ? y->data_ptr<float>() : nullptr;
  const float* a = scale.data_ptr<float>();
  const float* c = shift ? shift->data_ptr<float>() : nullptr;
  const float* b = y_scale ? y_scale->data_ptr<float>() : nullptr;
  const int64_t width = Vec::size(), body = vocab - vocab % width;
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / vocab);
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* row = xs + r * vocab;
      const float* other = ys ? ys + r * vocab : nullptr;
      const float row_shift = c ? c[r] : 0.f, row_y_scale = b ? b[r] : 0.f;
      const Vec va(a[r]), vc(row_shift), vb(row_y_scale);
      for (int64_t i = 0; i < body; i += width) {
        Vec value = Vec::loadu(row + i) * va - vc;
        if (other) value = at::vec::fmadd(Vec::loadu(other + i), vb, value);
        value.store(row + i);
      }
      for (int64_t i = body; i < vocab; ++i) row[i] = row[i] * a[r] - row_shift + (other ? other[i] * row_y_scale : 0.f);
    }
  });
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("kd_rows", &kd_rows, "row maxima, exponentials, sums and dot products of the fused KD loss");
  m.def("combine_rows", &combine_rows, "x <- scale*x - shift + y_scale*y per row, in place");
}
