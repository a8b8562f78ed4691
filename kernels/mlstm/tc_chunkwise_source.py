"""Launch texts of ``tc_chunkwise.py``; helpers (``pack2``, ``mma_bf16``, ...) come from its ``HEADER_CUDA`` or the
tests' CPU emulator, ``COMMON`` holds those both share (``XL_FN``: each side's inline qualifier)."""
COMMON = r"""
// Where (row, pair) of a transposed tile lives: rows of 36 pairs, the pair index XOR-ed with the row's 8-row block, so
// that both the transposing stores (8 rows 8 apart, 4 token pairs) and the fragment reads (8 consecutive rows, 4 pairs)
// hit 32 different banks
XL_FN int swz(int row, int word) { return row * 36 + (word ^ (((row >> 3) & 7) << 2)); }
// Rows ta, tb (a token pair) of a row-major [S, W] array (W a multiple of 8), columns col .. col + 7, times ea / eb,
// into a transposed tile at swz(8 o + e, p): zeros past S or W, and one at column `ones` (the normaliser: v == 1).
template <typename P>
XL_FN void stage_pair(bf2* tile, int o, int p, const P* rows, long ta, long tb, int S, int W, int col, int ones,
                      float ea, float eb) {
    float xa[8] = {};
    float xb[8] = {};
    if (col + 8 <= W) {
        if (ta < S) unpack8(ld_row8(rows + ta * W + col), xa);
        if (tb < S) unpack8(ld_row8(rows + tb * W + col), xb);
    } else if (col == ones) {
        xa[0] = 1.0f;
        xb[0] = 1.0f;
    }
    for (int e = 0; e < 8; ++e) tile[swz(8 * o + e, p)] = pack2(xa[e] * ea, xb[e] * eb);
}
"""

# Launch 1. Grid (NC, BH), 64 threads: one per token of the chunk.
GATES = r"""
    const int t = TID;
    const int c = GX;
    const int bh = GY;
    const int S = meta_[0];
    const int NC = meta_[1];
    const int NH = meta_[4];
    const long tok = (long)c * 64 + t;
    const long row = (long)bh * NC * 64 + tok;  // this token in the [BH, NC * 64] outputs
    SHARED float lf[64];
    SHARED float ig[64];
    SHARED float bb[64];
    SHARED float we[64];
    const bool valid = tok < S && (HAS_MASK == 0 || keep_[(long)(bh / NH) * S + (tok < S ? tok : 0)] > 0.5f);
    const float f_raw = valid ? static_cast<float>(f_[(long)bh * S + tok]) : 0.0f;
    lf[t] = valid ? fmin(f_raw, 0.0f) - log1p(exp(-fabs(f_raw))) : 0.0f;  // logsigmoid; 0 = keep the state
    ig[t] = valid ? static_cast<float>(i_[(long)bh * S + tok]) : -1e30f;   // -1e30 = add nothing
    BARRIER;
    float b = 0.0f;
    float suffix = 0.0f;
    UNROLL
    for (int r = 0; r < 64; ++r) b += r <= t ? lf[r] : 0.0f;
    UNROLL
    for (int r = 63; r >= 0; --r) suffix += r > t ? lf[r] : 0.0f;
    bb[t] = b;
    const float w_end = suffix + ig[t];
    we[t] = w_end;
    BARRIER;
    float best = -3e38f;  // max over s <= t of (i_s - b_s): the in-chunk part of the stabiliser
    UNROLL
    for (int r = 0; r < 64; ++r) best = r <= t ? fmax(best, ig[r] - bb[r]) : best;
    b_[row] = b;
    igo_[row] = ig[t];
    wend_[row] = w_end;
    u_[row] = b + best;
    if (t == 0) {
        float ml = -3e38f;
        for (int r = 0; r < 64; ++r) ml = fmax(ml, we[r]);
        gm_[((long)bh * NC + c) * 2] = bb[63];
        gm_[((long)bh * NC + c) * 2 + 1] = ml;
    }
"""

# What every mma launch starts with: the thread's warp, its place in an mma fragment (gid, tig), the shapes.
_WARP_INDEX = r"""
    const int tid = TID;
    const int warp = tid / 32;
    const int lane = tid % 32;
    const int gid = lane / 4;
    const int tig = lane % 4;
    const int S = meta_[0];
    const int NC = meta_[1];
    const int DK = meta_[2];
    const int DV = meta_[3];
    const int DVn = DV + 1;
"""

# Launch 2. Grid (ceil((DV + 1) / 64), NC * ceil(DK / 64), BH), 128 threads: L_c = k^T (v * exp(w_end - m_loc)) for
# all chunks, stored transposed (L^T[j][d]; column DV is the normaliser). Warp w owns rows j0 + 16 w .. + 15; v * ew
# and k are staged transposed since the mma's k dimension is tokens. When DV % 64 == 0 the last threadgroup column
# holds only the normaliser and sums that row directly (same rounding), not a 64-row product of 63/64 zeros.
LOCAL = _WARP_INDEX + r"""
    const int NDT = (DK + 63) / 64;
    const int j0 = GX * 64;
    const int c = GY / NDT;
    const int d0 = (GY % NDT) * 64;
    const int bh = GZ;
    const long tok0 = (long)c * 64;
    const float mloc = gm_[((long)bh * NC + c) * 2 + 1];
    if (j0 == DV) {  // uniform over the threadgroup: the normaliser row alone
        SHARED float part[4][64];  // [16-token quarter][key dim]
        const int pr = tid % 32;   // key dims d0 + 2 pr, + 1
        const int qt = tid / 32;   // tokens 16 qt .. + 15 of the chunk
        const int d = d0 + 2 * pr;
        float s0 = 0.0f;
        float s1 = 0.0f;
        UNROLL
        for (int t = 16 * qt; t < 16 * qt + 16; ++t) {
            const long tok = tok0 + t;
            if (tok < S && d < DK) {
                const float e = bf16_round(exp(wend_[(long)bh * NC * 64 + tok] - mloc));  // 0: masked, padded
                s0 += e * static_cast<float>(k_[((long)bh * S + tok) * DK + d]);
                s1 += e * static_cast<float>(k_[((long)bh * S + tok) * DK + d + 1]);
            }
        }
        part[qt][2 * pr] = s0;
        part[qt][2 * pr + 1] = s1;
        BARRIER;
        if (tid < 32 && d < DK)
            st_pair(LT_ + (((long)bh * NC + c) * DVn + DV) * DK + d,
                    (part[0][2 * pr] + part[1][2 * pr]) + (part[2][2 * pr] + part[3][2 * pr]),
                    (part[0][2 * pr + 1] + part[1][2 * pr + 1]) + (part[2][2 * pr + 1] + part[3][2 * pr + 1]));
    } else {
        constexpr int RS = 36;  // row stride in pairs (see swz)
        SHARED bf2 vT[64 * RS];  // [value column][token pair]: v * ew, at swz(column, pair)
        SHARED bf2 kT[64 * RS];  // [key dim][token pair], at swz(dim, pair)
        UNROLL
        // unit = (token pair p, 8 columns o), two per thread; 8 threads read a row's 128 bytes
        for (int r = 0; r < 2; ++r) {
            const int u = tid + 128 * r;
            const int o = u % 8;
            const int p = u / 8;
            const long ta = tok0 + 2 * p;
            const long tb = ta + 1;
            const float ea = exp(wend_[(long)bh * NC * 64 + ta] - mloc);  // 0 for masked and padded tokens
            const float eb = exp(wend_[(long)bh * NC * 64 + tb] - mloc);
            stage_pair(vT, o, p, v_ + (long)bh * S * DV, ta, tb, S, DV, j0 + 8 * o, DV, ea, eb);
            stage_pair(kT, o, p, k_ + (long)bh * S * DK, ta, tb, S, DK, d0 + 8 * o, -1, 1.0f, 1.0f);
        }
        BARRIER;
        float acc[8][4] = {};
        UNROLL
        for (int kk = 0; kk < 4; ++kk) {
            const int ra = 16 * warp + gid;
            const int w = 8 * kk + tig;
            const bf2 a[4] = {vT[swz(ra, w)], vT[swz(ra + 8, w)], vT[swz(ra, w + 4)], vT[swz(ra + 8, w + 4)]};
            UNROLL
            for (int nt = 0; nt < 8; ++nt) {
                const bf2 b[2] = {kT[swz(8 * nt + gid, w)], kT[swz(8 * nt + gid, w + 4)]};
                mma_bf16(acc[nt], a, b);
            }
        }
        UNROLL
        for (int nt = 0; nt < 8; ++nt) {
            UNROLL
            for (int e = 0; e < 4; e += 2) {
                const int j = j0 + 16 * warp + gid + (e < 2 ? 0 : 8);
                const int d = d0 + 8 * nt + 2 * tig;
                if (j < DVn && d < DK)
                    st_pair(LT_ + (((long)bh * NC + c) * DVn + j) * DK + d, acc[nt][e], acc[nt][e + 1]);
            }
        }
    }
"""

# Launch 3. Grid (ceil((DV + 1) * DK / 8 / 128), BH), 128 threads of 8 state entries: C_{c+1} = exp(g + m - m') C_c
# + exp(m_loc - m') L_c, m' = max(g + m, m_loc), writing each chunk's entry state; elementwise, so memory-bound.
SCAN = r"""
    const int S = meta_[0];
    const int NC = meta_[1];
    const int DK = meta_[2];
    const int DV = meta_[3];
    const int DVn = DV + 1;
    const int bh = GY;
    const long e8 = ((long)GX * 128 + TID) * 8;  // the first of this thread's entries of the [DVn, DK] slice
    if (e8 < (long)DVn * DK) {
        const int j = (int)(e8 / DK);
        const int d = (int)(e8 % DK);
        float C[8];
        UNROLL
        for (int e = 0; e < 8; ++e) {
            float x = 0.0f;
            if (HAS_STATE) x = j < DV ? C0_[((long)bh * DK + d + e) * DV + j] : n0_[(long)bh * DK + d + e];
            C[e] = x;
        }
        float m = HAS_STATE ? m0_[bh] : 0.0f;
        const long slice = (long)DVn * DK;
        row8 next = ld_row8(LT_ + (long)bh * NC * slice + e8);
        for (int c = 0; c < NC; ++c) {
            const row8 cur = next;
            if (c + 1 < NC) next = ld_row8(LT_ + ((long)bh * NC + c + 1) * slice + e8);
            st_row8(CT_ + ((long)bh * NC + c) * slice + e8, C);
            if (e8 == 0) mE_[(long)bh * NC + c] = m;
            const float g = gm_[((long)bh * NC + c) * 2];
            const float ml = gm_[((long)bh * NC + c) * 2 + 1];
            const float m_next = fmax(g + m, ml);
            const float a = exp(g + m - m_next);
            const float b = exp(ml - m_next);
            float x[8];
            unpack8(cur, x);
            UNROLL
            for (int e = 0; e < 8; ++e) C[e] = a * C[e] + b * x[e];
            m = m_next;
        }
        UNROLL
        for (int e = 0; e < 8; ++e) {
            if (j < DV) Cout_[((long)bh * DK + d + e) * DV + j] = C[e];
            else nout_[(long)bh * DK + d + e] = C[e];
        }
        if (e8 == 0) mout_[bh] = m;
    }
"""

# Launch 4. Grid (ceil(DV / 64), NC, BH), 128 threads; warp w: tokens 16 w .. + 15, columns j0 .. + 63, and a tile
# whose column 0 is the normaliser DV (q·n + sum of P). Key dims come in double-buffered async pieces of 32.
OUTPUTS = _WARP_INDEX + r"""
    const int j0 = GX * 64;
    const int c = GY;
    const int bh = GZ;
    const long tok0 = (long)c * 64;
    const long grow = (long)bh * NC * 64 + tok0;  // the chunk's first token in the gate arrays
    constexpr int RS = 36;  // pairs per row of the transposed v (see swz)
    constexpr int PS = 20;  // pairs per row of a key-dim piece: 16 + 4 (conflict-free fragment reads, 16-byte rows)
    SHARED bf2 qS[2 * 64 * PS];  // [buffer][token][key-dim pair]
    SHARED bf2 kS[2 * 64 * PS];  // [buffer][token][key-dim pair]
    SHARED bf2 cS[2 * 72 * PS];  // [buffer][value column][key-dim pair]: the entry state, tile + normaliser tile
    SHARED bf2 vT[72 * RS];      // [value column][token pair] at swz(column, pair): tile + ones in row 64
    SHARED float gb[64];
    SHARED float gi[64];
    const long cbase = ((long)bh * NC + c) * DVn;  // the chunk's entry state, row 0
    auto issue = [&](int piece) {  // start copying key dims 32 piece .. + 31 of q, k and the entry state
        const int buf = piece & 1;
        for (int e = tid; e < 64 * 4; e += 128) {
            const int rr = e / 4;
            const int dd = 32 * piece + 8 * (e % 4);
            const long t = tok0 + rr;
            const bool ok = t < S && dd < DK;
            cp_async8(qS + (buf * 64 + rr) * PS + 4 * (e % 4), ok ? q_ + ((long)bh * S + t) * DK + dd : q_, ok);
            cp_async8(kS + (buf * 64 + rr) * PS + 4 * (e % 4), ok ? k_ + ((long)bh * S + t) * DK + dd : k_, ok);
        }
        for (int e = tid; e < 72 * 4; e += 128) {
            const int rr = e / 4;
            const int dd = 32 * piece + 8 * (e % 4);
            const int j = rr < 64 ? j0 + rr : DV + (rr - 64);
            const bool ok = (rr < 64 ? j < DV : j < DVn) && dd < DK;
            cp_async8(cS + (buf * 72 + rr) * PS + 4 * (e % 4), ok ? CT_ + (cbase + j) * DK + dd : CT_, ok);
        }
        cp_async_commit();
    };
    const int NP = (DK + 31) / 32;
    issue(0);
    // meanwhile: v transposed (no weights), ones for the normaliser column, gates
    UNROLL
    for (int r = 0; r < 2; ++r) {
        const int u = tid + 128 * r;
        const int o = u % 8;
        const int p = u / 8;
        const long ta = tok0 + 2 * p;
        stage_pair(vT, o, p, v_ + (long)bh * S * DV, ta, ta + 1, S, DV, j0 + 8 * o, -1, 1.0f, 1.0f);
    }
    for (int e = tid; e < 8 * 32; e += 128) {
        const float one = e < 32 ? 1.0f : 0.0f;
        vT[swz(64 + e / 32, e % 32)] = pack2(one, one);
    }
    if (tid < 64) {
        gb[tid] = b_[grow + tid];
        gi[tid] = ig_[grow + tid];
    }
    float sacc[8][4] = {};  // q k^T
    float acc[9][4] = {};   // q C_entry, then + P v; tile 8 = the normaliser column
    for (int piece = 0; piece < NP; ++piece) {
        if (piece + 1 < NP) {
            issue(piece + 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        BARRIER;  // this piece has landed for every thread
        const int buf = piece & 1;
        UNROLL
        for (int kk = 0; kk < 2; ++kk) {
            const int ra = (buf * 64 + 16 * warp + gid) * PS + 8 * kk + tig;
            const bf2 a[4] = {qS[ra], qS[ra + 8 * PS], qS[ra + 4], qS[ra + 8 * PS + 4]};
            UNROLL
            for (int nt = 0; nt < 8; ++nt) {
                const int rb = (buf * 64 + 8 * nt + gid) * PS + 8 * kk + tig;
                const bf2 b[2] = {kS[rb], kS[rb + 4]};
                mma_bf16(sacc[nt], a, b);
            }
            UNROLL
            for (int nt = 0; nt < 9; ++nt) {
                const int rb = (buf * 72 + 8 * nt + gid) * PS + 8 * kk + tig;
                const bf2 b[2] = {cS[rb], cS[rb + 4]};
                mma_bf16(acc[nt], a, b);
            }
        }
        BARRIER;  // its readers are done before the buffer is refilled
    }
    // gates of the two rows this lane holds
    const float scale = rsqrt(static_cast<float>(DK));
    const float m_c = mE_[(long)bh * NC + c];
    const int ta = 16 * warp + gid;
    const int tb = ta + 8;
    const float ba = gb[ta];
    const float bbv = gb[tb];
    const float mta = fmax(ba + m_c, u_[grow + ta]);
    const float mtb = fmax(bbv + m_c, u_[grow + tb]);
    const float sa = exp(ba + m_c - mta) * scale;
    const float sb = exp(bbv + m_c - mtb) * scale;
    UNROLL
    for (int nt = 0; nt < 9; ++nt) {
        acc[nt][0] *= sa;
        acc[nt][1] *= sa;
        acc[nt][2] *= sb;
        acc[nt][3] *= sb;
    }
    // P = (q k^T) * scale * exp(b_t - b_s + i_s - m_t) for s <= t, as the A fragments of P v: split into a bfloat16
    // head and tail (P is formed here in float32, and its rounding alone would cost 8 bits of every output; v is exact)
    bf2 ph[4][4];
    bf2 pl[4][4];
    UNROLL
    for (int nt = 0; nt < 8; ++nt) {
        float w[4];
        UNROLL
        for (int e = 0; e < 4; ++e) {
            const int s = 8 * nt + 2 * tig + (e & 1);
            const int t = e < 2 ? ta : tb;
            const float bt = e < 2 ? ba : bbv;
            const float mt = e < 2 ? mta : mtb;
            w[e] = s <= t ? sacc[nt][e] * scale * exp(bt - gb[s] + gi[s] - mt) : 0.0f;
        }
        split2(w[0], w[1], ph[nt / 2][(nt % 2) * 2], pl[nt / 2][(nt % 2) * 2]);
        split2(w[2], w[3], ph[nt / 2][(nt % 2) * 2 + 1], pl[nt / 2][(nt % 2) * 2 + 1]);
    }
    UNROLL
    for (int kk = 0; kk < 4; ++kk) {
        UNROLL
        for (int nt = 0; nt < 9; ++nt) {
            const bf2 b[2] = {vT[swz(8 * nt + gid, 8 * kk + tig)], vT[swz(8 * nt + gid, 8 * kk + tig + 4)]};
            mma_bf16(acc[nt], ph[kk], b);
            mma_bf16(acc[nt], pl[kk], b);
        }
    }
    // the normaliser tile has one non-zero column (DV): its row sums over the quad are q·n + sum of P
    const float qna = quad_sum(acc[8][0] + acc[8][1]);
    const float qnb = quad_sum(acc[8][2] + acc[8][3]);
    const float eps = eps_[0];
    const float ra_ = 1.0f / (fmax(fabs(qna), exp(fmin(-mta, 80.0f))) + eps);
    const float rb_ = 1.0f / (fmax(fabs(qnb), exp(fmin(-mtb, 80.0f))) + eps);
    UNROLL
    for (int nt = 0; nt < 8; ++nt) {
        const int j = j0 + 8 * nt + 2 * tig;
        if (j < DV) {
            if (tok0 + ta < S) st_pair(h_ + ((long)bh * S + tok0 + ta) * DV + j, acc[nt][0] * ra_, acc[nt][1] * ra_);
            if (tok0 + tb < S) st_pair(h_ + ((long)bh * S + tok0 + tb) * DV + j, acc[nt][2] * rb_, acc[nt][3] * rb_);
        }
    }
"""

SOURCES = {  # name -> (algorithm text, input names, output names)
    "gates": (GATES, ["i_", "f_", "keep_", "meta_"], ["b_", "igo_", "wend_", "u_", "gm_"]),
    "local": (LOCAL, ["k_", "v_", "wend_", "gm_", "meta_"], ["LT_"]),
    "scan": (SCAN, ["LT_", "gm_", "C0_", "n0_", "m0_", "meta_"], ["CT_", "mE_", "Cout_", "nout_", "mout_"]),
    "outputs": (OUTPUTS, ["q_", "k_", "v_", "b_", "ig_", "u_", "CT_", "mE_", "meta_", "eps_"], ["h_"]),
}
