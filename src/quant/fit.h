// Scale searches shared by the quantizers. Each fits a scale (and for the affine one a min) to a
// small group of values under per-element weights, by trying a fixed set of trial scales and
// refining with weighted least squares. They reproduce ggml's make_qx_quants (rmse_type 1),
// make_qkx3_quants and make_qp_quants operation by operation: the quantizers built on them must
// give the same bytes as ggml's, so the float operations keep ggml's order.
#pragma once

#include <cstdint>

namespace moeserve::quant {

// Sub-blocks whose largest magnitude is below this are treated as all zero.
inline constexpr float kGroupMaxEps = 1e-15f;

// QK_K importance weights of 1. IQ2_XXS, IQ2_XS and IQ1_S are defined with an importance matrix
// only; without one every column weighs the same, which is what an importance matrix of ones
// gives.
const float* unit_weights();

// Symmetric levels: x ~ scale * (L - nmax), L in [0, 2 nmax). Weights w (x^2 when null) score the
// fit. Starts from the scale that maps the signed extreme to -nmax, tries 18 nearby inverse scales
// -(nmax + 0.1 k) / max and keeps the best least-squares fit. Returns the scale (0 and L = 0 for
// an all-zero group).
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, const float* w);

// Affine levels: x ~ scale * L + min, L in [0, nmax], min <= 0, squared error weighted by w
// (x^2 when null), over nstep + 1 trial inverse scales (rmin + rdelta k + nmax) / (max - min),
// each refit by weighted least squares. Returns the scale; *neg_min gets -min.
float make_qkx3_quants(int n, int nmax, const float* x, const float* w, uint8_t* L, float* neg_min, float rmin,
                       float rdelta, int nstep);

// Non-negative values (scales and mins of sub-blocks): x ~ scale * L, L in [0, nmax], weighted
// by w. Picks the best of 9 inverse scales (nmax + 0.1 k) / max by weighted squared error, then
// moves single levels while that improves the least-squares fit. Returns the scale.
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* w);

}  // namespace moeserve::quant
