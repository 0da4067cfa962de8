"""Lessons of the seed documents, as runnable demos (`negaug repro lessons`): one figure each.

1. Vanishing generator gradient (lecture notes, "the GAN minimax game"): a small MLP D trains
   against a FIXED generator (1-D: real N(2, 0.5^2), fake = G(z) = -2 + 0.5 z); after each
   checkpoint of D steps we measure the norm of the gradient of the generator loss w.r.t. G's
   parameters under minimax (log(1 - D(G(z)))) and non-saturating (-log D(G(z))). Expected: the
   minimax gradient vanishes as D becomes accurate; the non-saturating one does not.
2. Divergences between parallel segments (WGAN paper, Example 1): P0 = (0, U[0,1]),
   P_theta = (theta, U[0,1]). Analytic: JS = log 2 and KL = inf for theta != 0 (both 0 at 0),
   W1 = |theta|. Estimated on samples: W1 by a WGAN-GP critic (E_P0 f - E_Ptheta f on held-out
   samples), JS by a trained logistic D (log 2 + 0.5 (E log D(x) + E log(1 - D(y)))).
3. Mode collapse on the 5 x 5 grid: a plain GAN, feature matching, minibatch discrimination,
   MIX+GAN (`model.mixture=3`) and the plain GAN with NDA, equal steps, each trained by
   `negaug.experiment.train` and cached by config hash (the grid arms of `negaug repro toolkit`,
   shared with it through one runs folder); measured by modes covered
   (`negaug.metrics.toy.toy_quality`).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from negaug import data, losses, models, viz
from negaug.repro import common, toolkit
from negaug.repro.common import Arm, Study

SIZES: dict[str, dict[str, Any]] = {  # the grid's settings: `negaug repro toolkit`'s of the same size
    "tiny": {"checkpoints": [0, 5, 20], "critic_steps": 30, "thetas": [0.0, 1.0]},
    "quick": {"checkpoints": [0, 10, 30, 100, 300, 1000], "critic_steps": 400,
              "thetas": [-1.0, -0.5, -0.2, 0.0, 0.2, 0.5, 1.0]},
    "full": {"checkpoints": [0, 10, 30, 100, 300, 1000, 3000], "critic_steps": 1000,
             "thetas": [-1.0, -0.5, -0.25, -0.1, 0.0, 0.1, 0.25, 0.5, 1.0]},
}
LOG2 = math.log(2.0)


# ---------------------------------------------------------------------------------------------
# 1. vanishing generator gradient


def mlp_critic(data_dim: int, width: int, seed: int) -> nn.Module:
    """A small MLP D (negaug's mlp model, 2 hidden layers): (B, data_dim) -> (B,) raw logits."""
    torch.manual_seed(seed)  # nn.Module init has no generator argument; the demo owns the process
    return models.build("mlp", None, None, data_dim=data_dim, width=width, depth=2)[1]


def generator_gradient_norm(G: nn.Module, D: nn.Module, loss_name: str, z: torch.Tensor) -> float:
    """||d g_loss / d theta_G||_2 for `loss_name`'s generator term on D(G(z)), z (B, 1)."""
    G.zero_grad(set_to_none=True)
    losses.build(loss_name).g_loss(D(G(z))).backward()
    return float(torch.sqrt(sum(p.grad.square().sum() for p in G.parameters())))


def vanishing_gradient(checkpoints: list[int], seed: int, batch_size: int = 256) -> list[dict[str, float]]:
    """Train D (minimax D loss, Adam) against a fixed 1-D affine G; at each number of D steps in
    `checkpoints` measure D's accuracy and both generator-gradient norms on a held-out batch."""
    gen = torch.Generator().manual_seed(seed)
    G = nn.Linear(1, 1)
    with torch.no_grad():
        G.weight.fill_(0.5)
        G.bias.fill_(-2.0)  # fake ~ N(-2, 0.5^2)
    D = mlp_critic(1, 32, seed)
    opt = torch.optim.Adam(D.parameters(), lr=5e-3, betas=(0.5, 0.999))
    d_loss = losses.build("minimax")
    z_eval = torch.randn(1024, 1, generator=gen)
    real_eval = 2.0 + 0.5 * torch.randn(1024, 1, generator=gen)
    rows, steps = [], 0
    for target in sorted(checkpoints):
        while steps < target:
            real = 2.0 + 0.5 * torch.randn(batch_size, 1, generator=gen)
            with torch.no_grad():
                fake = G(torch.randn(batch_size, 1, generator=gen))
            loss, _ = d_loss.d_loss(D(real), D(fake))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
        with torch.no_grad():
            v_real, v_fake = D(real_eval), D(G(z_eval))
        accuracy = 0.5 * float((v_real > 0).float().mean() + (v_fake < 0).float().mean())
        rows.append({"d_steps": steps, "d_accuracy": accuracy, "mean_d_fake": float(torch.sigmoid(v_fake).mean()),
                     "grad_minimax": generator_gradient_norm(G, D, "minimax", z_eval),
                     "grad_nonsaturating": generator_gradient_norm(G, D, "nonsaturating", z_eval)})
    return rows


# ---------------------------------------------------------------------------------------------
# 2. divergences between parallel segments (WGAN paper, Example 1)


def segment(theta: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """n points of P_theta = (theta, U[0, 1]) -> (n, 2)."""
    return torch.stack([torch.full((n,), float(theta)), torch.rand(n, generator=generator)], dim=1)


def analytic_divergences(theta: float) -> dict[str, float]:
    """JS (nats), KL(P0||Ptheta) = KL(Ptheta||P0) and W1 between the two segments."""
    apart = theta != 0
    return {"js": LOG2 if apart else 0.0, "kl": math.inf if apart else 0.0, "w1": abs(theta)}


def _train_d(D: nn.Module, theta: float, loss_name: str, steps: int, gen: torch.Generator,
             batch_size: int, lr: float) -> None:
    """`steps` D steps of `loss_name` with P0 as real and P_theta as fake (+ GP for wgan-gp)."""
    loss = losses.build(loss_name)
    opt = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.9))
    for _ in range(steps):
        real, fake = segment(0.0, batch_size, gen), segment(theta, batch_size, gen)
        total, _ = loss.d_loss(D(real), D(fake))
        if loss.gp_weight:
            total = total + loss.gp_weight * losses.gradient_penalty(D, real, fake, generator=gen)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()


def estimate_w1(theta: float, steps: int, seed: int, batch_size: int = 256, num_eval: int = 4096) -> float:
    """W1(P0, P_theta) by a WGAN-GP critic: E_P0 f - E_Ptheta f on held-out samples (the critic
    maximises E_P0 f - E_Ptheta f, the Kantorovich-Rubinstein dual, so its sign is free)."""
    gen = torch.Generator().manual_seed(seed)
    D = mlp_critic(2, 64, seed)
    _train_d(D, theta, "wgan-gp", steps, gen, batch_size, lr=1e-3)
    with torch.no_grad():
        return float(D(segment(0.0, num_eval, gen)).mean() - D(segment(theta, num_eval, gen)).mean())


def estimate_js(theta: float, steps: int, seed: int, batch_size: int = 256, num_eval: int = 4096) -> float:
    """JS(P0, P_theta) in nats from a logistic D trained with the minimax D loss:
    log 2 + 0.5 (E_P0 log D + E_Ptheta log(1 - D)) on held-out samples (<= log 2; ~0 when D = 1/2)."""
    gen = torch.Generator().manual_seed(seed)
    D = mlp_critic(2, 64, seed)
    _train_d(D, theta, "minimax", steps, gen, batch_size, lr=3e-3)
    with torch.no_grad():
        v_real, v_fake = D(segment(0.0, num_eval, gen)), D(segment(theta, num_eval, gen))
    # log D = -softplus(-v), log(1 - D) = -softplus(v)
    return LOG2 - 0.5 * float(nn.functional.softplus(-v_real).mean() + nn.functional.softplus(v_fake).mean())


def divergences(thetas: list[float], steps: int, seed: int,
                on_theta: Callable[[int, float], None] = lambda index, theta: None) -> list[dict[str, float]]:
    """Analytic and estimated divergences per theta; `on_theta(index, theta)` before each (progress)."""
    rows = []
    for index, t in enumerate(thetas):
        on_theta(index, t)
        rows.append({"theta": t, **{f"analytic_{k}": v for k, v in analytic_divergences(t).items()},
                     "estimated_w1": estimate_w1(t, steps, seed), "estimated_js": estimate_js(t, steps, seed)})
    return rows


# ---------------------------------------------------------------------------------------------
# 3. mode collapse on the 5 x 5 grid

# arm name (run folders) -> label (report, figure): arms of `negaug repro toolkit`'s grid, which shares their runs
GRID_ARMS = {"plain": "plain GAN", "feature_matching": "feature matching", "minibatch": "minibatch discrimination",
             "mixgan": "MIX+GAN (3 G, 3 D)", "plain_nda": "plain GAN + NDA"}


def grid_arms(size: str) -> list[Arm]:
    """The arms trained by negaug.experiment.train (`model.mixture=3` for MIX+GAN): the toolkit's
    grid arms, the `ring` preset on the grid without R1, no NDA unless the arm says so."""
    return [toolkit.grid_arm(name.removesuffix("_nda"), name.endswith("_nda"), size) for name in GRID_ARMS]


def mode_collapse(study: Study) -> tuple[dict[str, list[dict[str, Any]]], list, dict[str, torch.Tensor]]:
    """Modes covered per arm and seed; also the trained arms (records) and the first seed's samples."""
    per_arm: dict[str, list[dict[str, Any]]] = {name: [] for name in GRID_ARMS}
    trained, shown = [], {}
    for seed in study.seeds:
        for arm in grid_arms(study.size):
            t, points, run = toolkit.grid_points(study, arm, seed)
            trained.append(t)
            entry = {"seed": seed, **toolkit.evaluate_points(run.reference_dataset("test"), points)}
            generator = run.generator
            if hasattr(generator, "weights"):  # MIX+GAN: the learned mixture weights of the generators
                entry["g_weights"] = generator.weights().tolist()
            per_arm[arm.name].append(entry)
            shown.setdefault(arm.name, points[:2000])
    return per_arm, trained, shown


# ---------------------------------------------------------------------------------------------
# figures, results, report


def plot_gradients(rows: list[dict[str, float]], path: Path) -> Path:
    figure = viz.new_figure(9.0, 3.8)
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    steps = [max(r["d_steps"], 1) for r in rows]
    for key, label in (("grad_minimax", "minimax: log(1 - D(G(z)))"), ("grad_nonsaturating", "non-saturating: -log D(G(z))")):
        left.plot(steps, [r[key] for r in rows], marker="o", label=label)
        right.plot([r["d_accuracy"] for r in rows], [r[key] for r in rows], marker="o", label=label)
    left.set(xscale="log", yscale="log", xlabel="D steps against a fixed G (0 shown at 1)",
             ylabel="||grad of G loss w.r.t. G's parameters||", title="generator gradient vs D training")
    right.set(yscale="log", xlabel="D accuracy (held-out)", title="generator gradient vs D accuracy")
    left.legend(fontsize=7)
    return viz.save_figure(figure, path)


def plot_divergences(rows: list[dict[str, float]], path: Path) -> Path:
    figure = viz.new_figure(10.0, 3.8)
    js, kl, w = (figure.add_subplot(1, 3, i) for i in (1, 2, 3))
    dense = torch.linspace(min(r["theta"] for r in rows), max(r["theta"] for r in rows), 201).tolist()
    thetas = [r["theta"] for r in rows]
    js.plot(dense, [analytic_divergences(t)["js"] for t in dense], label="analytic")
    js.scatter([0.0], [0.0], color="C0", zorder=3)
    js.plot(thetas, [r["estimated_js"] for r in rows], "o", label="estimated (logistic D)")
    js.set(xlabel="theta", ylabel="nats", title="JS: jumps at theta = 0")
    top = 2.0
    kl.plot(dense, [top if t != 0 else math.nan for t in dense], label="analytic: +inf (clipped)")
    kl.scatter([0.0], [0.0], color="C0", zorder=3)
    kl.set(xlabel="theta", ylim=(-0.1, top + 0.2), title="KL (both ways): inf off 0")
    w.plot(dense, [abs(t) for t in dense], label="analytic |theta|")
    w.plot(thetas, [r["estimated_w1"] for r in rows], "o", label="estimated (WGAN-GP critic)")
    w.set(xlabel="theta", title="W1 = |theta|: continuous")
    for axes in (js, kl, w):
        axes.legend(fontsize=7)
    return viz.save_figure(figure, path)


def plot_modes(per_arm: dict[str, list[dict[str, Any]]], shown: dict[str, torch.Tensor], dataset, path: Path) -> Path:
    shown = {name: shown[name] for name in GRID_ARMS if name in shown}
    figure = viz.new_figure(3.0 * len(shown), 3.8)  # room for two-line titles above square axes
    for i, (name, points) in enumerate(shown.items()):
        axes = figure.add_subplot(1, len(shown), i + 1)
        axes.scatter(dataset.centers[:, 0], dataset.centers[:, 1], s=20, c="lightgrey", marker="s")
        axes.scatter(points[:, 0], points[:, 1], s=1, alpha=0.4)
        covered = common.spread([e["modes_covered"] for e in per_arm[name]])["mean"]
        axes.set(title=f"{GRID_ARMS[name]}\n{covered:.1f} of 25 modes", xlim=(-6, 6), ylim=(-6, 6), aspect="equal")
        axes.tick_params(labelsize=6)
    return viz.save_figure(figure, path)


def run(study: Study) -> dict[str, Any]:
    s = SIZES[study.size]
    seed = study.seeds[0]
    study.progress("lessons 1/3: vanishing generator gradient")
    gradients = vanishing_gradient(s["checkpoints"], seed)
    plot_gradients(gradients, study.out_dir / "vanishing_gradient.png")
    study.progress("lessons 2/3: divergences between parallel segments")
    divs = divergences(s["thetas"], s["critic_steps"], seed, lambda index, theta: study.progress(
        f"lessons 2/3: theta {theta:+.2f} ({index + 1} of {len(s['thetas'])}: 2 x {s['critic_steps']} critic steps)"))
    plot_divergences(divs, study.out_dir / "divergences.png")
    study.progress(f"lessons 3/3: mode collapse on the 5 x 5 grid ({len(GRID_ARMS)} arms x {len(study.seeds)} "
                   f"seeds, a bar per training run)")
    per_arm, trained, shown = mode_collapse(study)
    plot_modes(per_arm, shown, data.build("grid", split="test"), study.out_dir / "mode_collapse.png")
    results = summarize(study, gradients, divs, per_arm, trained)
    common.write_outputs(study.out_dir, results, report(results))
    return results


def summarize(study: Study, gradients, divs, per_arm, trained) -> dict[str, Any]:
    first, last = gradients[0], gradients[-1]  # before D trains, fully trained
    ratio = [r["grad_minimax"] / r["grad_nonsaturating"] for r in gradients]
    covered = {name: common.spread([e["modes_covered"] for e in entries]) for name, entries in per_arm.items()}
    apart = [r for r in divs if r["theta"] != 0]
    return {
        "experiment": "lessons", "paper": "seed documents: lecture notes (002), f-GAN/WGAN slides (003), "
        "Arora et al. notes (004)", "size": study.size, "seeds": study.seeds,
        "settings": {**SIZES[study.size], **{k: v for k, v in toolkit.SIZES[study.size].items() if k.startswith("grid")},
                     "grid_arms": {a.name: a.overrides for a in grid_arms(study.size)},
                     "mixgan": "model.mixture=3: 3 MLP generators + 3 MLP discriminators, nonsaturating, the "
                               "mixture-weight regulariser of Arora et al.'s code (model.mixture_regulariser=log, "
                               "weight model.mixture_entropy=0.1), Adam 1e-3 (0.5, 0.999), no R1, no NDA"},
        "protocol": {"vanishing_gradient": "real N(2, 0.5^2), fixed G(z) = -2 + 0.5 z, D = mlp(width 32, depth 2) "
                                           "trained with the minimax D loss (Adam 5e-3); norms on 1024 held-out latents",
                     "divergences": "critic/D = mlp(width 64, depth 2); WGAN-GP (gp 10, Adam 1e-3) and logistic "
                                    "(minimax D loss, Adam 3e-3); estimates on 4096 held-out samples per side",
                     "modes": "negaug.metrics.toy.toy_quality: within 3 std of a mode; covered at >= 1% of samples",
                     "seed_for_1_and_2": study.seeds[0], "latent_seed": "10000 + seed"},
        "vanishing_gradient": gradients, "gradient_ratio_minimax_over_nonsaturating": ratio,
        "divergences": divs, "modes_covered": covered, "mode_collapse_per_arm": per_arm,
        "targets": {
            "gradient_ratio_falls_50_fold": ratio[0] >= 50 * ratio[-1],
            "minimax_gradient_below_peak_by_2_fold": max(r["grad_minimax"] for r in gradients) >= 2 * last["grad_minimax"],
            "nonsaturating_gradient_does_not_vanish": last["grad_nonsaturating"] >= first["grad_nonsaturating"],
            "w1_estimate_within_0.1_of_abs_theta": all(abs(r["estimated_w1"] - abs(r["theta"])) <= 0.1 for r in divs),
            "js_estimate_at_0_below_0.05": all(abs(r["estimated_js"]) <= 0.05 for r in divs if r["theta"] == 0),
            "js_estimate_apart_above_half_log2": all(r["estimated_js"] >= 0.5 * LOG2 for r in apart),
        },
        "runs": common.run_records(trained), "environment": common.environment(),
    }


def report(results: dict[str, Any]) -> list[str]:
    grads, divs = results["vanishing_gradient"], results["divergences"]
    grad_rows = [[r["d_steps"], f"{r['d_accuracy']:.3f}", f"{r['mean_d_fake']:.2e}", f"{r['grad_minimax']:.2e}",
                  f"{r['grad_nonsaturating']:.2e}", f"{q:.2e}"]
                 for r, q in zip(grads, results["gradient_ratio_minimax_over_nonsaturating"])]
    div_rows = [[f"{r['theta']:+.2f}", f"{r['analytic_js']:.3f}", f"{r['estimated_js']:.3f}", _kl(r["analytic_kl"]),
                 f"{r['analytic_w1']:.3f}", f"{r['estimated_w1']:.3f}"] for r in divs]
    mode_rows = [[GRID_ARMS[name], common.fmt(stats, 2), " ".join(str(e["modes_covered"]) for e in results["mode_collapse_per_arm"][name]),
                  f"{common.spread([e['high_quality_fraction'] for e in results['mode_collapse_per_arm'][name]])['mean']:.3f}"]
                 for name, stats in results["modes_covered"].items()]
    s = results["settings"]
    targets = "; ".join(f"{k}: {'met' if v else 'not met'}" for k, v in results["targets"].items())
    return [
        "# Lessons of the seed documents", "",
        f"Size `{results['size']}`, seeds {results['seeds']} (figures 1 and 2 use seed {results['seeds'][0]}).", "",
        "## 1. The minimax generator gradient vanishes as D improves", "",
        f"Protocol: {results['protocol']['vanishing_gradient']}.", "",
        common.markdown_table(["D steps", "D accuracy", "mean D(G(z))", "||grad|| minimax", "||grad|| non-saturating",
                               "ratio"], grad_rows), "",
        "![generator gradient norms](vanishing_gradient.png)", "",
        "## 2. JS and KL jump at theta = 0, W1 is continuous (WGAN paper, Example 1)", "",
        f"Protocol: {results['protocol']['divergences']}; {s['critic_steps']} D steps per theta.", "",
        common.markdown_table(["theta", "JS analytic", "JS estimated", "KL analytic", "W1 analytic", "W1 estimated"],
                              div_rows), "",
        "![divergences between parallel segments](divergences.png)", "",
        "## 3. Mode collapse on the 5 x 5 grid (25 modes)", "",
        (f"{s['grid_steps']} steps per arm (MLP width {s['grid_width']}, batch {s['grid_batch']}), "
         f"{s['grid_samples']} samples per arm and seed; {results['protocol']['modes']}. MIX+GAN: {s['mixgan']}."), "",
        common.markdown_table(["arm", "modes covered (mean ± std)", "per seed", "share within 3 std of a mode"],
                              mode_rows), "",
        "![samples per arm (seed of the first run)](mode_collapse.png)", "",
    ] + ([f"Targets: {targets}."] if common.carries_verdicts(results["size"]) else [])


def _kl(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.3f}"
