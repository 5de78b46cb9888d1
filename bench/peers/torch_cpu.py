"""Peer: PyTorch on the CPU (torch.set_num_threads(2)), run by the benchmark harness as a child process.

Reads the job (JSON: cases, timing policy, firstIndex) from argv[1] and prints one line per case,
`@@bench {"index", "medianMs", "runs", "note"}`, like the JavaScript peers (bench/peers/protocol.ts).
Timing mirrors bench/timing.ts: one warm-up call, then samples until the case's budget is used, each
sample one complete (synchronous) execution of the op on tensors already in memory.
"""
import json
import math
import sys
import time

SCORES_BYTES = 256 * 1024 * 1024  # largest attention scores block materialised at once


def info(obj):
    print("@@bench-info " + json.dumps(obj), flush=True)


def report(obj):
    print("@@bench " + json.dumps(obj), flush=True)


def median(xs):
    s = sorted(xs)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def time_runs(run, policy):
    budget, min_runs, max_runs = policy["budgetMs"], policy["minRuns"], policy["maxRuns"]
    start = time.perf_counter()
    run()
    cold = (time.perf_counter() - start) * 1e3
    if cold >= budget * 2:
        return {"medianMs": cold, "runs": 1, "note": "one cold run (first call took over twice the budget)"}
    if cold >= budget / 2:
        t0 = time.perf_counter()
        run()
        return {"medianMs": (time.perf_counter() - t0) * 1e3, "runs": 1, "note": "one warm run (a run takes over half the budget)"}
    samples = []
    while len(samples) < max_runs:
        t0 = time.perf_counter()
        run()
        samples.append((time.perf_counter() - t0) * 1e3)
        spent = (time.perf_counter() - start) * 1e3
        nxt = median(samples)
        if len(samples) >= min_runs and spent + nxt > budget:
            break
        if spent + nxt > budget * 1.5:
            break
    out = {"medianMs": median(samples), "runs": len(samples)}
    if len(samples) < min_runs:
        out["note"] = "only %d warm run(s) fit the budget" % len(samples)
    return out


def flops_of(c):
    k = c["kernel"]
    if k == "matmul":
        return 2 * c["M"] * c["K"] * c["N"]
    if k == "attention":
        return 4 * c["H"] * c["S"] * c["S"] * c["D"]
    if k == "conv3d":
        return 2 * c["C"] * 27 * c["O"] * c["T"] * c["H"] * c["W"]
    return None


def make_op(torch, F, c):
    g = torch.Generator().manual_seed(1)

    def rnd(*shape):
        return torch.rand(*shape, generator=g) * 2 - 1

    k = c["kernel"]
    if k == "matmul":
        x, w = rnd(c["M"], c["K"]), rnd(c["N"], c["K"])
        if torch.backends.mkldnn.is_available():
            # oneDNN's linear (bundled with torch): F.linear goes through the system BLAS, which on
            # Debian's torch is whatever libblas.so.3 points to (the reference BLAS unless OpenBLAS is
            # installed), up to ~20x slower. Operands converted once, like the GPU peers' uploads.
            import torch.utils.mkldnn
            lin = torch.nn.Linear(c["K"], c["N"], bias=False)
            lin.weight.data = w
            lin_m, x_m = torch.utils.mkldnn.to_mkldnn(lin), x.to_mkldnn()
            return (lambda: lin_m(x_m)), "oneDNN linear (torch.utils.mkldnn), f32 weights (ours: bf16)"
        return (lambda: F.linear(x, w)), "F.linear (system BLAS), f32 weights (ours: bf16)"
    if k == "attention":
        S, H, D = c["S"], c["H"], c["D"]
        q, kk, v = rnd(H, S, D), rnd(H, S, D), rnd(H, S, D)
        chunk = max(1, min(H, SCORES_BYTES // (S * S * 4)))
        scale = 1 / math.sqrt(D)

        def attn():
            outs = []
            for h in range(0, H, chunk):
                p = torch.softmax(torch.matmul(q[h:h + chunk], kk[h:h + chunk].transpose(1, 2)) * scale, dim=-1)
                outs.append(torch.matmul(p, v[h:h + chunk]))
            return outs

        return attn, "unfused matmul/softmax/matmul (torch 1.x has no fused attention; matmuls via the system BLAS), %d head(s) at a time" % chunk
    if k == "conv3d":
        x, w = rnd(1, c["C"], c["T"], c["H"], c["W"]), rnd(c["O"], c["C"], 3, 3, 3)
        return (lambda: F.conv3d(x, w, padding=1)), "F.conv3d"
    if k == "layernorm":
        x = rnd(c["rows"], c["cols"])
        return (lambda: F.layer_norm(x, (c["cols"],), eps=1e-6)), "F.layer_norm"
    raise ValueError("unknown kernel " + k)


def main():
    job = json.loads(sys.argv[1])
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        for i in range(len(job["cases"])):
            report({"index": job["firstIndex"] + i, "medianMs": None, "runs": 0, "note": "torch not installed: %s" % e})
        return
    torch.set_num_threads(2)
    info({"version": "torch %s (%d threads)" % (torch.__version__, torch.get_num_threads())})
    rates = {}  # kernel -> (GFLOP/s, shape) of its last measured case: CaseGuard in protocol.ts
    cap = job.get("maxCaseMs")
    with torch.no_grad():
        for i, c in enumerate(job["cases"]):
            index = job["firstIndex"] + i
            flops = flops_of(c)
            if cap is not None and flops is not None and c["kernel"] in rates:
                gflops, shape = rates[c["kernel"]]
                predicted = flops / (gflops * 1e6)
                if predicted > cap:
                    note = "skipped: one run would take ~%.0f s at the %.3g GFLOP/s measured on %s (cap %g s per run; --max-case-s to change)" % (
                        predicted / 1000, gflops, shape, cap / 1000)
                    report({"index": index, "medianMs": None, "runs": 0, "note": note})
                    continue
            try:
                run, note = make_op(torch, F, c)
                t = time_runs(run, job["policy"])
                t["note"] = "; ".join(n for n in (note, t.get("note")) if n)
                if flops is not None and t["medianMs"]:
                    rates[c["kernel"]] = (flops / (t["medianMs"] * 1e6), job["shapes"][i])
                report({"index": index, **t})
            except Exception as e:  # a failing case must not stop the others
                report({"index": index, "medianMs": None, "runs": 0, "note": "failed: %s" % str(e).splitlines()[0][:200]})


if __name__ == "__main__":
    main()
