# One Wan DiT block (self-attention with q/k RMS norm and RoPE-like rotation, cross-attention, GELU-tanh
# FFN, 6-way modulation, float32 gates) in PyTorch on the CPU, following the official WanAttentionBlock's
# math, timed for `npm run bench -- dit`. Prints one JSON line: {"medianMs": ..., "runs": ..., "threads": ...}.
# torch 1.13 has no scaled_dot_product_attention: attention is softmax(q k^T / sqrt(d)) v per head.
# Linears go through oneDNN (torch.utils.mkldnn) when available: Debian's torch sends F.linear to the
# system BLAS, which is the slow reference BLAS unless OpenBLAS is installed.
import json, os, sys, time
import torch
import torch.nn.functional as F

dim, heads, ffn, tokens, ctx, runs = (int(a) for a in sys.argv[1:7])
torch.manual_seed(0)
torch.set_num_threads(os.cpu_count() or 1)
d = dim // heads

MKLDNN = torch.backends.mkldnn.is_available()
if MKLDNN:
    import torch.utils.mkldnn


class Lin:
    def __init__(self, o, i):
        m = torch.nn.Linear(i, o)
        m.weight.data = torch.randn(o, i) / i ** 0.5
        m.bias.data.zero_()
        self.m = torch.utils.mkldnn.to_mkldnn(m) if MKLDNN else m

    def __call__(self, x):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        y = self.m(x2.to_mkldnn()).to_dense() if MKLDNN else self.m(x2)
        return y.reshape(*shape[:-1], y.shape[-1])


def lin(o, i):
    return (Lin(o, i),)

W = {k: lin(dim, dim) for k in ['sq', 'sk', 'sv', 'so', 'cq', 'ck', 'cv', 'co']}
f1, f2 = lin(ffn, dim), lin(dim, ffn)
gq, gk, cgq, cgk, n3w, n3b = (torch.ones(dim) for _ in range(6))
mod = torch.randn(6, dim) / dim ** 0.5
x = torch.randn(1, tokens, dim)
context = torch.randn(1, ctx, dim)
cos = torch.randn(tokens, 1, d // 2).cos()
sin = torch.randn(tokens, 1, d // 2).sin()

def _lin(x, m):
    return m(x)


def rms(t, g, eps=1e-6):
    return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + eps) * g

def rope(t):  # adjacent pairs as complex numbers
    t = t.view(tokens, heads, d // 2, 2)
    a, b = t[..., 0], t[..., 1]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], -1).view(tokens, heads, d)

def attn(q, k, v):  # [L, N, D]
    q, k, v = (t.transpose(0, 1) for t in (q, k, v))
    p = torch.softmax(q @ k.transpose(1, 2) / d ** 0.5, -1)
    return (p @ v).transpose(0, 1).reshape(q.shape[1], dim)

def block(x):
    e = mod.unsqueeze(0)
    y = F.layer_norm(x, (dim,), eps=1e-6) * (1 + e[:, 1]) + e[:, 0]
    y = y[0]
    q = rope(rms(_lin(y, *W['sq']), gq).view(tokens, heads, d))
    k = rope(rms(_lin(y, *W['sk']), gk).view(tokens, heads, d))
    v = _lin(y, *W['sv']).view(tokens, heads, d)
    x = x + _lin(attn(q, k, v), *W['so']) * e[:, 2]
    y = F.layer_norm(x, (dim,), n3w, n3b, eps=1e-6)[0]
    q = rms(_lin(y, *W['cq']), cgq).view(tokens, heads, d)
    c = context[0]
    k = rms(_lin(c, *W['ck']), cgk).view(ctx, heads, d)
    v = _lin(c, *W['cv']).view(ctx, heads, d)
    x = x + _lin(attn(q, k, v), *W['co'])
    y = F.layer_norm(x, (dim,), eps=1e-6) * (1 + e[:, 4]) + e[:, 3]
    y = _lin(F.gelu(_lin(y, *f1), approximate='tanh'), *f2)
    return x + y * e[:, 5]

with torch.no_grad():
    block(x)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        block(x)
        times.append((time.perf_counter() - t0) * 1000)
times.sort()
print(json.dumps({"medianMs": times[len(times) // 2], "runs": runs, "threads": torch.get_num_threads(), "linear": "oneDNN" if MKLDNN else "F.linear (system BLAS)"}))
