#!/usr/bin/env python3
"""PyTorch eager reference for `cargo bench -p sr-runtime --bench train`.

Builds the same two denoisers as sr's `transformer` (runtime/src/denoisers/dit.rs) and times, on the CPU, the
same training step (rectified-flow velocity target with per-variable times, weighted MSE + 0.01 Gaussian
NLL, backward, global-norm clipping at 1.0, AdamW, EMA 0.999) and the same sampler loop (one denoiser call
and one Euler step per step, 100 steps for Sudoku and 50 for the image model).

Models, as in the Rust benchmark:
  sudoku  81 variables x 9 features, width 128, depth 6, 8 heads, batch 64
  dit_s2  256 variables x 12 features (2x2 patches of 32x32x3), width 384, depth 12, 6 heads, batch 8
  sudoku_dep  the denoiser and training of examples/sudoku.srx: width 64, depth 8, 4 heads, MLP ratio 2,
              time_dim 64, attention limited to each cell's row, column and box, batch 64

Usage:  python3 bench/pytorch_reference.py [--threads N] [--quick] [--only sudoku|dit_s2|sudoku_dep]
                                          [--device cpu|cuda] [--precision f32|bf16|f16] [--compile]
Needs only `torch` (CPU build is enough for the CPU): `pip install torch`. `--precision bf16` runs the
forward and backward under `torch.autocast` (f32 weights and optimizer), as sr's `precision = bf16`;
f16 adds a `GradScaler`. `--compile` wraps the model in torch.compile (inductor) and labels the table so.
"""

import argparse
import math
import os
import time

import torch
from torch import nn
import torch.nn.functional as F

# Set by main(): where tensors live and the autocast dtype (None = f32).
DEVICE = torch.device("cpu")
AUTOCAST = None
# Set by main(): whether the model runs through torch.compile.
COMPILE = False


class TimeEmbedding(nn.Module):
    """Sinusoidal features of 1000 t (cosines then sines) -> Linear -> SiLU -> Linear, per variable."""

    def __init__(self, dim, out):
        super().__init__()
        half = dim // 2
        freqs = 1000.0 * torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
        self.register_buffer("freqs", freqs.float())
        self.fc1 = nn.Linear(dim, out)
        self.fc2 = nn.Linear(out, out)

    def forward(self, t):
        args = t.unsqueeze(-1) * self.freqs
        e = torch.cat([args.cos(), args.sin()], dim=-1)
        return self.fc2(F.silu(self.fc1(e)))


def zero_linear(i, o):
    layer = nn.Linear(i, o)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class Block(nn.Module):
    """adaLN-Zero block with per-token conditioning, separate q/k/v and six modulation projections."""

    def __init__(self, width, heads, mlp_ratio=4.0):
        super().__init__()
        self.heads = heads
        self.modulation = nn.ModuleList([zero_linear(width, width) for _ in range(6)])
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.v = nn.Linear(width, width)
        self.proj = nn.Linear(width, width)
        hidden = round(width * mlp_ratio)
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def attention(self, h, mask):
        b, n, w = h.shape
        d = w // self.heads

        def split(layer):
            return layer(h).reshape(b, n, self.heads, d).transpose(1, 2)

        q, k, v = split(self.q), split(self.k), split(self.v)
        scores = (q * (1.0 / math.sqrt(d))) @ k.transpose(-1, -2)
        if mask is not None:
            scores = scores + mask
        out = scores.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, w))

    def forward(self, x, c, mask=None):
        m = [layer(c) for layer in self.modulation]
        h = F.layer_norm(x, x.shape[-1:], eps=1e-6) * (1 + m[1]) + m[0]
        x = x + self.attention(h, mask) * m[2]
        h = F.layer_norm(x, x.shape[-1:], eps=1e-6) * (1 + m[4]) + m[3]
        return x + self.fc2(F.gelu(self.fc1(h), approximate="tanh")) * m[5]


class Dit(nn.Module):
    """sr's `transformer` denoiser: z [B, V, F], t [B, V] -> (prediction [B, V, F], log-variance [B, V])."""

    def __init__(self, variables, features, width, depth, heads, time_dim=256, mlp_ratio=4.0, mask=None):
        super().__init__()
        self.embed = nn.Linear(features, width)
        self.pos = nn.Parameter(torch.randn(1, variables, width) * 0.02)
        self.time = TimeEmbedding(time_dim, width)
        self.blocks = nn.ModuleList([Block(width, heads, mlp_ratio) for _ in range(depth)])
        self.register_buffer("mask", mask)
        self.final_shift = zero_linear(width, width)
        self.final_scale = zero_linear(width, width)
        self.head = zero_linear(width, features)
        self.var_head = zero_linear(width, 1)

    def forward(self, z, t):
        x = self.embed(z) + self.pos
        c = F.silu(self.time(t))
        for block in self.blocks:
            x = block(x, c, self.mask)
        h = F.layer_norm(x, x.shape[-1:], eps=1e-6) * (1 + self.final_scale(c)) + self.final_shift(c)
        return self.head(h), self.var_head(h).squeeze(-1)


def sample_times(b, v, known):
    """Per-sample mean m ~ U(0, 1), per-variable t ~ Beta around m; given variables t = 0, weight 0."""
    m = torch.rand(b, 1, device=DEVICE).clamp(0.02, 0.98)
    k = 4.0
    t = torch.distributions.Beta(m * k, (1 - m) * k).sample((v,)).squeeze(-1).T.contiguous()
    if known is not None:
        t = t.masked_fill(known, 0.0)
        w = (~known).float()
    else:
        w = torch.ones(b, v, device=DEVICE)
    return t, w


def train_step(model, opt, ema, x, known, scaler=None):
    b, v, _ = x.shape
    t, w = sample_times(b, v, known)
    eps = torch.randn_like(x)
    tt = t.unsqueeze(-1)
    z = (1 - tt) * x + tt * eps
    target = eps - x
    with torch.autocast(DEVICE.type, dtype=AUTOCAST, enabled=AUTOCAST is not None):
        pred, log_var = model(z, t)
    pred, log_var = pred.float(), log_var.float()
    err = (pred - target).square().mean(-1)
    active = max(int((w > 0).sum()), 1)
    mse = (err * w).sum() / active
    nll = (0.5 * (err.detach() * (-log_var).exp() + log_var) * w).sum() / active
    loss = mse + 0.01 * nll
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    with torch.no_grad():
        torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()], 1 - 0.999)
    return float(loss.detach())


@torch.no_grad()
def sample(model, x, known, steps):
    """`steps` denoiser calls; each moves every unknown variable one Euler step along its own time grid.

    For the Sudoku model the per-variable grids are staggered by the predicted uncertainty (most certain
    first), like an adaptive sequential schedule; for images every variable shares one grid.
    """
    b, v, f = x.shape
    z = torch.randn_like(x)
    if known is not None:
        z = torch.where(known.unsqueeze(-1), x, z)
    unknown = torch.ones(b, v, device=DEVICE) if known is None else (~known).float()
    t = unknown.clone()
    for i in range(steps):
        with torch.autocast(DEVICE.type, dtype=AUTOCAST, enabled=AUTOCAST is not None):
            pred, log_var = model(z, t)
        pred, log_var = pred.float(), log_var.float()
        if known is None:
            t_next = torch.full_like(t, 1.0 - (i + 1) / steps)
        else:
            sigma = (0.5 * log_var).exp() * (t > 0)
            order = torch.argsort(sigma + (t <= 0) * 1e9, dim=1).argsort(dim=1).float()
            lead = (i + 1) / steps * v * 2 - order
            t_next = (1.0 - lead.clamp(0, v) / v).clamp(0, 1)
        t_next = torch.minimum(t_next, t) * unknown
        z = z + (t_next - t).unsqueeze(-1) * pred
        t = t_next
    return z


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def measure(warmup, iters, fn):
    for i in range(warmup):
        fn(i)
    sync()
    times = []
    for i in range(iters):
        start = time.perf_counter()
        fn(warmup + i)
        sync()
        times.append(time.perf_counter() - start)
    times.sort()
    n = len(times)
    median = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    return median, times[0]


def sudoku_mask():
    """Additive [81, 81] mask: 0 where two cells share a row, column or box (sr's `attention = dependency`)."""
    i = torch.arange(81)
    r, c = i // 9, i % 9
    box = (r // 3) * 3 + c // 3
    allowed = (r[:, None] == r[None]) | (c[:, None] == c[None]) | (box[:, None] == box[None])
    return torch.zeros(81, 81).masked_fill(~allowed, float("-inf"))


def bench(name, variables, features, width, depth, heads, batch, lr, steps, givens, quick, **arch):
    torch.manual_seed(1)
    model = Dit(variables, features, width, depth, heads, **arch).to(DEVICE)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    ema = [p.detach().clone() for p in model.parameters()]
    scaler = torch.amp.GradScaler(DEVICE.type) if AUTOCAST == torch.float16 else None
    warmup, iters = (1, 3) if quick else (2, 8)
    data = [torch.randn(batch, variables, features, device=DEVICE).sign() for _ in range(warmup + iters)]
    knowns = [None] * len(data)
    if givens:
        lo, hi = givens
        knowns = []
        for _ in data:
            counts = torch.randint(lo, hi + 1, (batch, 1), device=DEVICE)
            knowns.append(torch.rand(batch, variables, device=DEVICE).argsort(dim=1) < counts)
    run = torch.compile(model) if COMPILE else model
    train = measure(warmup, iters, lambda i: train_step(run, opt, ema, data[i], knowns[i], scaler))

    x = torch.randn(batch, variables, features, device=DEVICE).sign()
    known = None
    if givens:
        known = torch.rand(batch, variables, device=DEVICE).argsort(dim=1) < 35
    s_warm, s_iters = 0, 1
    samp = measure(s_warm, s_iters, lambda i: sample(run, x, known, steps))
    return name, params, batch, train, steps, samp


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=int(os.environ.get("RAYON_NUM_THREADS", os.cpu_count())),
                        help="torch threads (default: RAYON_NUM_THREADS or the CPU count, as candle)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--only", choices=["sudoku", "dit_s2", "sudoku_dep"], help="run one model")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to run (default cpu)")
    parser.add_argument("--precision", choices=["f32", "bf16", "f16"], default="f32",
                        help="autocast dtype of the forward and backward (default f32)")
    parser.add_argument("--compile", action="store_true", help="run the models through torch.compile (inductor)")
    args = parser.parse_args()
    global DEVICE, AUTOCAST, COMPILE
    COMPILE = args.compile
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this torch has no CUDA or the machine has no GPU")
    DEVICE = torch.device(args.device)
    AUTOCAST = {"f32": None, "bf16": torch.bfloat16, "f16": torch.float16}[args.precision]
    quick = args.quick or os.environ.get("SR_BENCH_QUICK", "0") not in ("", "0")
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    where = torch.cuda.get_device_name() if DEVICE.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    mode = "torch.compile" if COMPILE else "eager"
    print(f"PyTorch {torch.__version__} {mode} {args.precision} benchmark: {where}" + (" (quick)" if quick else ""))
    rows = []
    if args.only in (None, "sudoku"):
        rows.append(bench("sudoku", 81, 9, 128, 6, 8, 64, 1e-3, 100, (30, 81), quick))
    if args.only in (None, "dit_s2"):
        rows.append(bench("dit_s2", 256, 12, 384, 12, 6, 8, 1e-4, 50, None, quick))
    if args.only in (None, "sudoku_dep"):
        rows.append(bench("sudoku_dep", 81, 9, 64, 8, 4, 64, 2e-3, 100, (0, 81), quick,
                          time_dim=64, mlp_ratio=2.0, mask=sudoku_mask()))
    print(f"{'model':<12} {'params':>9} {'batch':>6} {'steps/s':>13} {'best steps/s':>13} {'calls':>6}"
          f" {'samples/s':>13} {'best samples/s':>13}")
    for name, params, batch, (t_med, t_min), steps, (s_med, s_min) in rows:
        print(f"{name:<12} {params:>9} {batch:>6} {1 / t_med:>13.3f} {1 / t_min:>13.3f} {steps:>6}"
              f" {batch / s_med:>13.3f} {batch / s_min:>13.3f}")


if __name__ == "__main__":
    main()
