# Tutorial 4: optimizers on a 2-D function, learning-rate schedules, then on the lab MLP.

# %% [markdown]
# # 4. Optimizers: how each one walks downhill
#
# Training moves the parameters $\theta$ against the gradient of the loss $f$. Every
# optimizer in `minidl.optim` does one thing per step: it turns the gradient
# $g_t = \nabla f(\theta_{t-1})$ into an update direction $u_t$ and moves
#
# $$\theta_t = \theta_{t-1} - \eta\, u_t ,$$
#
# where $\eta$ is the learning rate. They differ only in $u_t$ (and, for the
# *hypergradient* optimizers, in how $\eta$ changes). In this notebook we
#
# 1. run every optimizer on two functions of **two** parameters, where we can draw the
#    landscape and the path each optimizer takes;
# 2. draw the learning-rate **schedules** minidl offers;
# 3. train the lab's MLP on Fashion-MNIST with each optimizer and compare the loss curves.
#
# Everything below uses minidl's own classes, which follow `torch.optim` (same names,
# arguments and update formulas; the test suite checks them against PyTorch).

# %%
import os, time
SMALL = os.environ.get("MINIDL_TUTORIAL_SMALL", "") not in ("", "0")   # the test suite sets it
%matplotlib inline

import numpy as np
import matplotlib.pyplot as plt

import minidl
from minidl import nn, optim
from minidl.nn import Parameter
from tutorial import record, claim        # docs/tutorials/tutorial: stated values, checks

print("small mode" if SMALL else "full mode")

# one look per optimizer, used by every figure: colour *and* line style/marker, because
# some curves lie on top of each other
STYLES = {
    "SGD":      dict(color="C0", ls="-"),
    "momentum": dict(color="C1", ls="--"),
    "Nesterov": dict(color="C2", ls="-."),
    "RMSprop":  dict(color="C3", ls=":"),
    "Adam":     dict(color="C4", ls="-", marker="o", markevery=(0.0, 0.1), ms=3),
    "AdamW":    dict(color="C5", ls="--", marker="s", markevery=(0.033, 0.1), ms=3),
    "SGDHD":    dict(color="C6", ls=":", marker="^", markevery=(0.05, 0.1), ms=3),
    "AdamHD":   dict(color="C7", ls="-.", marker="v", markevery=(0.066, 0.1), ms=3),
}

# %% [markdown]
# ## Two test functions, with their gradients by hand
#
# **A skewed quadratic.** $f(\theta) = \tfrac12 (\theta - \theta^*)^\top A\, (\theta - \theta^*)$
# with $\theta^* = (1, 1)$ and $A = R\,\mathrm{diag}(1, 25)\,R^\top$, $R$ a rotation by 30°.
# Its gradient is $\nabla f = A(\theta - \theta^*)$. The level sets are ellipses 5 times
# longer than wide (the *condition number* $\lambda_{max}/\lambda_{min} = 25$), tilted so
# that neither coordinate axis points down the valley. Plain gradient descent is stable only
# for $\eta < 2/\lambda_{max} = 0.08$, and then it crawls along the long axis, shrinking the
# error there by the factor $1 - \eta\lambda_{min}$ per step.
#
# **Rosenbrock's banana.** $f(x, y) = (1-x)^2 + 100\,(y - x^2)^2$, minimum $0$ at $(1, 1)$,
# at the bottom of a narrow curved valley:
#
# $$\frac{\partial f}{\partial x} = -2(1-x) - 400\,x\,(y - x^2), \qquad
#   \frac{\partial f}{\partial y} = 200\,(y - x^2).$$
#
# The gradient is huge on the valley walls and tiny along the valley floor, so a single
# learning rate is too big in one place and too small in the other.
#
# We check both hand-written gradients against central finite differences before trusting
# them (the same idea as `minidl.gradcheck`).

# %%
angle = np.pi / 6
R = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
A = R @ np.diag([1.0, 25.0]) @ R.T
THETA_STAR = np.array([1.0, 1.0])


def quadratic(x, y):
    dx, dy = x - THETA_STAR[0], y - THETA_STAR[1]
    return 0.5 * (A[0, 0] * dx * dx + 2 * A[0, 1] * dx * dy + A[1, 1] * dy * dy)


def quadratic_grad(theta):
    return A @ (theta - THETA_STAR)


def rosenbrock(x, y):
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def rosenbrock_grad(theta):
    x, y = theta
    return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])


def numerical_grad(f, theta, h=1e-6):
    e = np.eye(2) * h
    return np.array([(f(*(theta + e[i])) - f(*(theta - e[i]))) / (2 * h) for i in range(2)])


rng = np.random.default_rng(0)
for name, f, grad in [("quadratic", quadratic, quadratic_grad),
                      ("rosenbrock", rosenbrock, rosenbrock_grad)]:
    worst = max(np.max(np.abs(grad(t) - numerical_grad(f, t)) / (1 + np.abs(grad(t))))
                for t in rng.uniform(-2, 2, size=(20, 2)))
    print(f"{name:10s}: largest relative difference, hand vs finite differences: {worst:.1e}")

# %% [markdown]
# ## One loop for every optimizer
#
# The two coordinates are one minidl `Parameter` of shape `(2,)`. Where a network's
# `backward` would fill `theta.grad`, we write the hand gradient there ourselves; then
# `optimizer.step()` updates `theta.data` in place, exactly as in training. We record the
# path and the learning rate at each step (the hypergradient optimizers change it).

# %%
def trajectory(make_optimizer, grad, start, steps):
    """Points visited and learning rate used, from ``start``, for ``steps`` steps."""
    theta = Parameter(np.array(start, dtype=np.float64))
    opt = make_optimizer([theta])
    points, rates = [theta.data.copy()], []
    for _ in range(steps):
        theta.grad = grad(theta.data)      # what loss.backward() would do in a network
        opt.step()
        points.append(theta.data.copy())
        rates.append(opt.param_groups[0]["lr"])
    return np.array(points), np.array(rates)

# %% [markdown]
# ## The update rules
#
# With $g_t$ the gradient at step $t$ (minidl's docstrings give the full forms, with weight
# decay, dampening and the other options):
#
# | optimizer | update |
# |---|---|
# | SGD | $\theta_t = \theta_{t-1} - \eta\, g_t$ |
# | momentum (heavy ball) | $b_t = \mu b_{t-1} + g_t,\quad \theta_t = \theta_{t-1} - \eta\, b_t$ |
# | Nesterov | $b_t = \mu b_{t-1} + g_t,\quad \theta_t = \theta_{t-1} - \eta\,(g_t + \mu b_t)$ |
# | RMSprop | $v_t = \alpha v_{t-1} + (1-\alpha) g_t^2,\quad \theta_t = \theta_{t-1} - \eta\, g_t / (\sqrt{v_t} + \epsilon)$ |
# | Adam | $m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\ v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\ \theta_t = \theta_{t-1} - \eta\,\dfrac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}$ |
# | AdamW | Adam, plus the *decoupled* decay $\theta \leftarrow \theta - \eta\lambda\theta$ outside the moments |
# | SGD-HD | SGD whose rate follows its hypergradient: $\eta_t = \eta_{t-1} + \beta\, g_t \cdot u_{t-1}$ |
# | Adam-HD | Adam with the same rule for $\eta$, $u_{t-1}$ being Adam's previous direction |
#
# Momentum averages the gradients of successive steps: components that flip sign (the
# zig-zag across a narrow valley) cancel, components that agree (down the valley) add up,
# up to $1/(1-\mu) = 10$ times for $\mu = 0.9$. RMSprop and Adam divide each coordinate by
# the root-mean-square of its recent gradients, so every coordinate moves about $\eta$ per
# step whatever the scale of its gradient.
#
# The hypergradient optimizers (Baydin et al., 2018) use the fact that the loss after a step
# depends on the rate that made the step: $\partial f(\theta_{t-1}) / \partial \eta =
# -g_t \cdot u_{t-1}$. If this step's gradient still points along the last step, the rate
# was too small and grows; if it points back (overshoot), the rate shrinks. $\beta$ is the
# *learning rate of the learning rate*.
#
# The learning rates below were picked by hand for each function (a few tries each), so
# that every optimizer does something sensible; change them and rerun to see how
# sensitive each one is.

# %%
QUADRATIC_OPTIMIZERS = {
    "SGD":      lambda p: optim.SGD(p, lr=0.07),
    "momentum": lambda p: optim.SGD(p, lr=0.01, momentum=0.9),
    "Nesterov": lambda p: optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True),
    "RMSprop":  lambda p: optim.RMSprop(p, lr=0.05),
    "Adam":     lambda p: optim.Adam(p, lr=0.3),
    "AdamW":    lambda p: optim.AdamW(p, lr=0.3, weight_decay=0.1),
    "SGDHD":    lambda p: optim.SGDHD(p, lr=0.005, hypergrad_lr=1e-5),
    "AdamHD":   lambda p: optim.AdamHD(p, lr=0.05, hypergrad_lr=1e-3),
}
ROSENBROCK_OPTIMIZERS = {
    "SGD":      lambda p: optim.SGD(p, lr=1e-3),
    "momentum": lambda p: optim.SGD(p, lr=1e-3, momentum=0.9),
    "Nesterov": lambda p: optim.SGD(p, lr=1e-3, momentum=0.9, nesterov=True),
    "RMSprop":  lambda p: optim.RMSprop(p, lr=1e-2),
    "Adam":     lambda p: optim.Adam(p, lr=5e-2),
    "AdamW":    lambda p: optim.AdamW(p, lr=5e-2, weight_decay=0.1),
    "SGDHD":    lambda p: optim.SGDHD(p, lr=1e-3, hypergrad_lr=1e-9),
    "AdamHD":   lambda p: optim.AdamHD(p, lr=1e-2, hypergrad_lr=1e-4),
}
QUADRATIC_STEPS, ROSENBROCK_STEPS = 150, (300 if SMALL else 1000)

start = time.perf_counter()
quad_runs = {name: trajectory(make, quadratic_grad, (-3.0, 3.0), QUADRATIC_STEPS)
             for name, make in QUADRATIC_OPTIMIZERS.items()}
rosen_runs = {name: trajectory(make, rosenbrock_grad, (-1.5, 2.0), ROSENBROCK_STEPS)
              for name, make in ROSENBROCK_OPTIMIZERS.items()}
print(f"{len(quad_runs) + len(rosen_runs)} runs in {time.perf_counter() - start:.2f} s\n")
print(f"{'optimizer':10s} {'quadratic: f(end)':>18s} {'rosenbrock: end point':>24s} {'f(end)':>10s}")
for name in QUADRATIC_OPTIMIZERS:
    q, r = quad_runs[name][0][-1], rosen_runs[name][0][-1]
    print(f"{name:10s} {quadratic(*q):18.2e}   ({r[0]:+.3f}, {r[1]:+.3f}) {rosenbrock(*r):16.2e}")


def f_values(runs, f):
    """f along each run: name -> array over the steps (step 0 = the start)."""
    return {name: f(points[:, 0], points[:, 1]) for name, (points, _) in runs.items()}


quad_f, rosen_f = f_values(quad_runs, quadratic), f_values(rosen_runs, rosenbrock)

# %% [markdown]
# ## The paths on the skewed quadratic
#
# Each panel is one optimizer; grey lines are level sets of $f$ (spaced by factors, so the
# flat bottom shows), the star is the minimum, red dots are the iterates (150 steps from
# $(-3, 3)$).
#
# What to look at:
# - **SGD** bounces from wall to wall across the valley (its rate is just below the
#   stability limit $2/\lambda_{max}$) and converges along the valley as the bounces decay.
# - **Momentum** overshoots and spirals: the velocity carries it past the minimum and back.
#   **Nesterov** adds the look-ahead term $\mu b_t$, which corrects the velocity sooner and
#   damps the spiral: same rate, visibly fewer loops. (With $\mu = 0.9$ this valley has
#   too much momentum for its mild condition number; see *Try it* at the end for the
#   best $\mu$.)
# - **RMSprop / Adam** first head along the *diagonal* (each coordinate moves about $\eta$,
#   whatever its gradient), not down the gradient. Then they part ways: Adam curves into
#   the minimum (it ends at $f = {{adam_f:.1e}}$), while RMSprop, after a fast start,
#   creeps: at step {{quad_steps}} it is still {{rms_dist:.2f}} from $\theta^*$, and still
#   getting closer. Its average $v_t$ of squared gradients has a long memory
#   ($\alpha = 0.99$: roughly the last 100 steps), and the first steps had gradients of
#   size up to {{rms_g0:.0f}}. Near the minimum, where the gradient is small, $\sqrt{v_t}$
#   still remembers them: at step {{quad_steps}} it is {{rms_ratio_lo:.0f}} to
#   {{rms_ratio_hi:.0f}} times the current gradient, so the step
#   $\eta\, g_t/\sqrt{v_t}$ is that many times shorter than $\eta$ — RMSprop behaves like
#   SGD with a tiny rate that grows only as the memory of the start fades.
# - **AdamW** lags far behind Adam: at every step the decoupled decay moves $\theta$ by
#   $\eta\lambda\theta$ (3% of $\theta$ here) towards the origin, while Adam's own step
#   near the minimum is short (its $\sqrt{\hat v_t}$ remembers the early gradients, as
#   RMSprop's does). The two nearly cancel, and AdamW moves on only as fast as that memory
#   fades ($f = {{adamw_f:.3f}}$ at step {{quad_steps}}). It could never stop exactly at
#   $\theta^*$: there the gradient is zero but the decay still pulls.
# - **SGD-HD** starts with a 14 times too small rate: its first steps are tiny, then the
#   rate jumps up within a few steps until the steps overshoot, and the path looks like
#   SGD's.

# %%
def draw_paths(runs, f, xlim, ylim, levels, title):
    xs, ys = np.linspace(*xlim, 100 if SMALL else 250), np.linspace(*ylim, 100 if SMALL else 250)
    X, Y = np.meshgrid(xs, ys)
    Z = f(X, Y)
    fig, axes = plt.subplots(2, 4, figsize=(10, 5), sharex=True, sharey=True)
    for ax, (name, (points, _)) in zip(axes.flat, runs.items()):
        ax.contour(X, Y, Z, levels=levels, colors="0.6", linewidths=0.6)
        ax.plot(points[:, 0], points[:, 1], ".-", color="C3", ms=2, lw=0.8)
        ax.plot(*THETA_STAR, "k*", ms=11)
        ax.set_xlim(xlim)
        ax.set_ylim(ylim)
        ax.set_title(name, fontsize=10)
    fig.suptitle(title)
    fig.supxlabel("$\\theta_1$")
    fig.supylabel("$\\theta_2$")
    fig.tight_layout()


draw_paths(quad_runs, quadratic, (-4, 4), (-2, 5), np.geomspace(0.01, 300, 14),
           f"Skewed quadratic (condition number 25): {QUADRATIC_STEPS} steps from (-3, 3)")
plt.show()

# %%
# RMSprop's memory, measured: replay v_t = a v_{t-1} + (1 - a) g_t^2 along its path
rms_points = quad_runs["RMSprop"][0]
rms_grads = np.array([quadratic_grad(p) for p in rms_points])     # g at every point visited
v = np.zeros(2)
for g in rms_grads[:-1]:                                           # the gradients it stepped on
    v = 0.99 * v + 0.01 * g ** 2
ratio = np.sqrt(v) / np.abs(rms_grads[-1])                         # sqrt(v) / |g| at the end
rms_dist = np.linalg.norm(rms_points[-1] - THETA_STAR)
print(f"RMSprop after {QUADRATIC_STEPS} steps: distance to the minimum {rms_dist:.3f}, "
      f"sqrt(v) / |g| per coordinate {np.round(ratio, 1)}")
print(f"largest gradient entry on its path: {np.abs(rms_grads).max():.1f} (step "
      f"{np.abs(rms_grads).max(axis=1).argmax()}); at the end: {np.abs(rms_grads[-1]).max():.3f}")
claim(quad_f["RMSprop"][-1] < quad_f["RMSprop"][-21] and rms_dist > 0.1,
      "RMSprop is still far from the minimum and still getting closer")
claim(ratio.min() > 3, "sqrt(v) is several times the current gradient")
claim(quad_f["Adam"][-1] < 1e-2 and quad_f["Adam"][-1] < quad_f["Adam"][-21],
      "Adam converges into the minimum")
record(quad_steps=QUADRATIC_STEPS, adam_f=quad_f["Adam"][-1], adamw_f=quad_f["AdamW"][-1],
       rms_dist=rms_dist,
       rms_g0=np.abs(rms_grads).max(), rms_ratio_lo=ratio.min(), rms_ratio_hi=ratio.max())

# %% [markdown]
# ## The paths on Rosenbrock's valley
#
# {{rosen_steps}} steps from $(-1.5, 2)$. What to look at:
# - **SGD** falls into the valley at once (the walls are steep) and then creeps along the
#   floor, where the gradient is small: after {{rosen_steps}} steps it is still
#   {{sgd_dist:.2f}} from $(1, 1)$.
# - **Momentum / Nesterov** build up speed along the floor and get closest to the minimum
#   ({{mom_dist:.3f}} and {{nest_dist:.3f}} away): this is what momentum is for.
# - **Adam** follows the valley without needing a rate matched to the gradient's scale
#   (it ends {{adam_dist:.3f}} away). **AdamW** ends {{adamw_dist:.3f}} away: the decay
#   pulls towards the origin at every step, and $(1, 1)$ itself is not a resting point for
#   it (the gradient vanishes there, the decay does not).
# - **SGD-HD** does no better than SGD here: the gradient's size changes by orders of
#   magnitude along the path, and so does the hypergradient $g_t \cdot u_{t-1}$. With
#   $\beta = 10^{-7}$ the rate explodes on the steep walls and the run diverges (the cell
#   below tries it); with $\beta = 10^{-9}$ (used here) the rate hardly moves on the flat
#   floor (next figure but one). Adam-HD, whose steps are normalised, adapts its rate
#   without that problem.

# %%
draw_paths(rosen_runs, rosenbrock, (-2, 2), (-1, 3), np.geomspace(0.05, 2500, 14),
           f"Rosenbrock: {ROSENBROCK_STEPS} steps from (-1.5, 2)")
plt.show()

# %%
rosen_dist = {name: np.linalg.norm(points[-1] - THETA_STAR)
              for name, (points, _) in rosen_runs.items()}
closest = sorted(rosen_dist, key=rosen_dist.get)
print("distance to (1, 1) at the end:", ", ".join(f"{n} {rosen_dist[n]:.3f}" for n in closest))
with np.errstate(over="ignore", invalid="ignore"):
    bold = trajectory(lambda p: optim.SGDHD(p, lr=1e-3, hypergrad_lr=1e-7), rosenbrock_grad,
                      (-1.5, 2.0), ROSENBROCK_STEPS)
print("SGD-HD with beta = 1e-7: the last point is", bold[0][-1])
claim(set(closest[:2]) == {"momentum", "Nesterov"}, "momentum and Nesterov get closest")
claim(set(closest[-2:]) == {"SGD", "SGDHD"}, "SGD and SGD-HD stay farthest")
claim(not np.isfinite(bold[0][-1]).all(), "with beta = 1e-7 SGD-HD diverges")
record(rosen_steps=ROSENBROCK_STEPS, sgd_dist=rosen_dist["SGD"], mom_dist=rosen_dist["momentum"],
       nest_dist=rosen_dist["Nesterov"], adam_dist=rosen_dist["Adam"],
       adamw_dist=rosen_dist["AdamW"])

# %% [markdown]
# ## How fast the loss falls
#
# The same runs, as $f(\theta_t) - f^*$ against the step on a log scale ($f^* = 0$ for both).
# A straight descending line is *linear convergence* (the error shrinks by a constant factor
# per step). From lowest to highest final $f$:
#
# - quadratic: {{quad_order}};
# - Rosenbrock: {{rosen_order}}.
#
# On the quadratic SGD, at a rate just below its stability limit, is hard to beat, and
# Nesterov ends lower than plain momentum. RMSprop and AdamW look flat on this scale but
# are still falling, slowly ($f$ went down by {{rms_change:.0%}} and {{adamw_change:.0%}}
# over the last 20 steps), for the reasons given with the paths above. On Rosenbrock the order changes: Nesterov and momentum first, plain SGD and SGD-HD
# hardly moving along the valley floor.

# %%
def order(values):
    return ", ".join(sorted(values, key=values.get))


final_quad = {name: values[-1] for name, values in quad_f.items()}
final_rosen = {name: values[-1] for name, values in rosen_f.items()}
adamw_change = 1 - quad_f["AdamW"][-1] / quad_f["AdamW"][-21]
rms_change = 1 - quad_f["RMSprop"][-1] / quad_f["RMSprop"][-21]
claim(min(final_quad, key=final_quad.get) == "SGD", "SGD ends lowest on the quadratic")
claim(final_quad["Nesterov"] < final_quad["momentum"], "Nesterov ends below momentum")
claim(adamw_change > 0 and rms_change > 0, "AdamW and RMSprop are still falling")
claim(final_quad["AdamW"] > 100 * final_quad["Adam"], "AdamW lags far behind Adam")
claim(sorted(final_rosen, key=final_rosen.get)[:2] == ["Nesterov", "momentum"],
      "Nesterov, then momentum, end lowest on Rosenbrock")
record(quad_order=order(final_quad), rosen_order=order(final_rosen), adamw_change=adamw_change,
       rms_change=rms_change)

fig, axes = plt.subplots(1, 2, figsize=(10, 4.3))
for ax, values, title in [(axes[0], quad_f, "skewed quadratic"),
                          (axes[1], rosen_f, "Rosenbrock")]:
    for name, f_t in values.items():
        ax.semilogy(f_t + 1e-16, label=name, lw=1.2, **STYLES[name])
    ax.set_xlabel("step")
    ax.set_ylabel("f(θ) − f*")
    ax.set_title(title)
axes[1].legend(fontsize=8, ncol=2)
fig.suptitle("How fast each optimizer lowers f (log scale)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The learning rate the hypergradient optimizers chose
#
# SGD-HD and Adam-HD write their current rate back into `param_groups[0]["lr"]` every step
# (so a scheduler, `fit`'s history and checkpoints all see it). On the quadratic the
# dashed line is SGD's stability limit $2/\lambda_{max} = 0.08$. SGD-HD's rate does not
# climb gradually: it *jumps* from 0.005 to {{hd_peak:.3f}} in {{hd_peak_step}} steps,
# above the limit; the steps overshoot, the hypergradient turns negative, the rate drops
# and, after a few oscillations, settles at {{hd_final:.3f}}, below the limit. Nobody told
# it the limit: it found it from the sign of $g_t \cdot u_{t-1}$. Adam-HD's rate ends
# {{adamhd_quad:.1f}} times its start on the quadratic and {{adamhd_rosen:.1f}} times on
# Rosenbrock; SGD-HD's stays within {{sgdhd_rosen:.0%}} of its start on Rosenbrock (the
# timid $\beta$ discussed above).

# %%
hd_rates = quad_runs["SGDHD"][1]
hd_peak_step = int(hd_rates.argmax())
claim(hd_rates.max() > 2 / 25 > hd_rates[-1] and hd_peak_step < 10,
      "SGD-HD's rate jumps above the limit within a few steps and settles below it")
claim(np.ptp(hd_rates[-50:]) < 0.01 * hd_rates[-1], "SGD-HD's rate has settled")
sgdhd_rosen = abs(rosen_runs["SGDHD"][1][-1] / 1e-3 - 1)
claim(sgdhd_rosen < 0.1, "SGD-HD's rate hardly moves on Rosenbrock")
record(hd_peak=hd_rates.max(), hd_peak_step=hd_peak_step + 1, hd_final=hd_rates[-1],
       adamhd_quad=quad_runs["AdamHD"][1][-1] / 0.05,
       adamhd_rosen=rosen_runs["AdamHD"][1][-1] / 1e-2, sgdhd_rosen=sgdhd_rosen)

fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
for ax, runs, title in [(axes[0], quad_runs, "skewed quadratic"),
                        (axes[1], rosen_runs, "Rosenbrock")]:
    for name in ("SGDHD", "AdamHD"):
        ax.plot(np.arange(1, len(runs[name][1]) + 1), runs[name][1], label=name,
                **STYLES[name])
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate η")
    ax.set_title(title)
axes[0].axhline(2 / 25, color="k", ls="--", lw=0.8, label="2/λmax (SGD's limit)")
axes[0].legend(fontsize=8)
fig.suptitle("The learning rate the hypergradient optimizers chose, step by step")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Learning-rate schedules
#
# A schedule changes $\eta$ between epochs; it is stepped once per epoch, after the
# optimizer's steps of that epoch (`scheduler.step()`), and writes the new rate into every
# parameter group. With $\eta_0$ the initial rate and $e$ the epoch:
#
# - `StepLR(step_size=s, gamma=γ)`: $\eta_e = \eta_0\,\gamma^{\lfloor e/s \rfloor}$
# - `MultiStepLR(milestones, gamma=γ)`: multiply by $\gamma$ at each milestone
# - `ExponentialLR(gamma=γ)`: $\eta_e = \eta_0\,\gamma^{e}$
# - `CosineAnnealingLR(T_max=T, eta_min=η_min)`:
#   $\eta_e = \eta_{min} + \tfrac12(\eta_0 - \eta_{min})\,(1 + \cos(\pi e / T))$
# - `ReduceLROnPlateau(factor=φ, patience=p)`: multiply by $\varphi$ when the monitored
#   loss has not improved for $p$ epochs; it is stepped with that loss,
#   `scheduler.step(val_loss)`.
#
# The lab spaces of this project offer `none`, `step` (×0.1 once, after half the epochs)
# and `cosine` (to 0 over the run); see `tuning.objective.make_scheduler`.
#
# Below, each schedule drives an optimizer over a dummy parameter for 40 epochs; for
# `ReduceLROnPlateau` we feed it a made-up validation loss that improves until epoch 12
# and then stays flat, so you can see the patience at work.

# %%
EPOCHS_DRAWN = 40


def schedule(make_scheduler, losses=None):
    opt = optim.SGD([Parameter(np.zeros(1))], lr=0.1)
    sched = make_scheduler(opt)
    rates = []
    for epoch in range(EPOCHS_DRAWN):
        rates.append(opt.param_groups[0]["lr"])   # the rate this epoch trains with
        # ... the epoch's optimizer.step() calls would be here ...
        if losses is None:
            sched.step()
        else:
            sched.step(losses[epoch])
    return rates


fake_val_loss = [1 / (1 + 0.3 * min(e, 12)) for e in range(EPOCHS_DRAWN)]
schedules = {
    "StepLR(step_size=10, gamma=0.5)": schedule(
        lambda o: optim.lr_scheduler.StepLR(o, step_size=10, gamma=0.5)),
    "MultiStepLR([15, 30], gamma=0.1)": schedule(
        lambda o: optim.lr_scheduler.MultiStepLR(o, milestones=[15, 30], gamma=0.1)),
    "ExponentialLR(gamma=0.93)": schedule(
        lambda o: optim.lr_scheduler.ExponentialLR(o, gamma=0.93)),
    "CosineAnnealingLR(T_max=40)": schedule(
        lambda o: optim.lr_scheduler.CosineAnnealingLR(o, T_max=EPOCHS_DRAWN)),
    "ReduceLROnPlateau(factor=0.5, patience=4)": schedule(
        lambda o: optim.lr_scheduler.ReduceLROnPlateau(o, factor=0.5, patience=4),
        losses=fake_val_loss),
}
fig, ax = plt.subplots(figsize=(9, 4))
looks = [dict(ls="-"), dict(ls="--"), dict(ls=":"), dict(ls="-."),
         dict(ls="-", marker="o", ms=3, markevery=2)]
for (label, rates), look in zip(schedules.items(), looks):
    ax.step(range(EPOCHS_DRAWN), rates, where="post", label=label, lw=1.5, **look)
ax.set_xlabel("epoch")
ax.set_ylabel("learning rate")
ax.set_title("Learning-rate schedules, initial rate 0.1")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# What to look at: the cosine schedule stays near $\eta_0$ for a long time and falls fastest
# in the middle; the exponential one falls fastest at the start. `ReduceLROnPlateau` does
# nothing while the loss improves (up to epoch 12), waits `patience` epochs of no
# improvement, halves the rate, waits again, and so on: it reacts to the data instead of
# following a fixed calendar.

# %% [markdown]
# ## The same optimizers on the lab MLP
#
# Now a real loss: the lab's network (`Flatten → Linear(784, 128) → ReLU → Dropout(0.2) →
# Linear(128, 10)`, `tuning.models.build_lab_nnet`) trained with the cross-entropy loss on
# Fashion-MNIST. The training loop is written out (it is what `minidl.train.fit` does, minus
# the bookkeeping) so that we can record the loss of **every mini-batch**:
#
#     optimizer.zero_grad()
#     loss = loss_fn(model(xb), yb)
#     model.backward(loss_fn.backward())
#     optimizer.step()
#
# Every run starts from the same initial weights and sees the batches in the same order
# (the same seeds), so the curves differ only by the optimizer. The learning rates are
# the usual starting points for each method, not tuned values (tutorial 5 tunes them).

# %%
import warnings
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, imported by Optuna
from minidl.data import (FASHION_MNIST_MEAN, FASHION_MNIST_STD, iterate_batches,
                         load_fashion_mnist, prepare)
from minidl.train import evaluate
from tuning.models import build_lab_nnet

N_TRAIN = 1000 if SMALL else 20000
N_VAL = 500 if SMALL else 5000
EPOCHS = 1 if SMALL else 3
BATCH = 64

raw = load_fashion_mnist(download=False)
train = prepare(raw.train_images[:N_TRAIN], raw.train_labels[:N_TRAIN],
                FASHION_MNIST_MEAN, FASHION_MNIST_STD)
val = prepare(raw.train_images[-N_VAL:], raw.train_labels[-N_VAL:],
              FASHION_MNIST_MEAN, FASHION_MNIST_STD)
print(f"training on {len(train)} images, validating on {len(val)} (the last {N_VAL} of the "
      f"training file), {EPOCHS} epoch(s), batches of {BATCH}")

MLP_OPTIMIZERS = {
    "SGD":      lambda p: optim.SGD(p, lr=0.05),
    "momentum": lambda p: optim.SGD(p, lr=0.01, momentum=0.9),
    "Nesterov": lambda p: optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True),
    "RMSprop":  lambda p: optim.RMSprop(p, lr=1e-3),
    "Adam":     lambda p: optim.Adam(p, lr=1e-3),
    "AdamW":    lambda p: optim.AdamW(p, lr=1e-3, weight_decay=1e-2),
    "SGDHD":    lambda p: optim.SGDHD(p, lr=0.01, hypergrad_lr=1e-3),
    "AdamHD":   lambda p: optim.AdamHD(p, lr=1e-3, hypergrad_lr=1e-7),
}


def train_mlp(make_optimizer, seed=0):
    minidl.manual_seed(seed)                       # same initial weights for every optimizer
    model = build_lab_nnet(28 * 28, 128, 0.2)
    loss_fn = nn.CrossEntropyLoss()
    opt = make_optimizer(list(model.parameters()))
    batch_rng = np.random.default_rng(seed)        # same batch order for every optimizer
    losses, rates = [], []
    model.train()
    for epoch in range(EPOCHS):
        for xb, yb in iterate_batches(train, BATCH, rng=batch_rng):
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            model.backward(loss_fn.backward())
            opt.step()
            losses.append(loss)
            rates.append(opt.param_groups[0]["lr"])
    return np.array(losses), np.array(rates), evaluate(model, val)


mlp_runs = {}
for name, make in MLP_OPTIMIZERS.items():
    start = time.perf_counter()
    mlp_runs[name] = train_mlp(make)
    losses, rates, scores = mlp_runs[name]
    print(f"{name:9s} final lr {rates[-1]:.2e}  last-50-batch loss {losses[-50:].mean():.3f}  "
          f"val accuracy {scores['accuracy']:.3f}  ({time.perf_counter() - start:.1f} s)")

# %% [markdown]
# ## Loss curves on Fashion-MNIST
#
# Left: the training loss of every mini-batch, smoothed (one batch's loss is noisy: 64
# images) with an exponential moving average, bias-corrected exactly as Adam corrects its
# moments: $s_t = a\,s_{t-1} + (1-a)\,\ell_t$, plotted as $s_t/(1-a^t)$, so the curve starts
# at the first batch's loss instead of at 0. Right: validation accuracy after training.
#
# What to look at (the x axis is logarithmic, so the first batches get room):
# - After {{early}} batches the three lowest smoothed losses are {{early_best}}: the
#   adaptive methods, which divide each step by the root-mean-square of recent gradients,
#   get going fastest with their usual rate $10^{-3}$.
# - RMSprop's loss first **jumps up** (to {{rms_peak:.2f}}, from {{rms_start:.2f}}). Its
#   average of squared gradients starts at zero and has no bias correction: after one step
#   $v_1 = (1-\alpha)\,g_1^2 = 0.01\,g_1^2$, so the first step moves each weight by
#   $\eta\,g_1/\sqrt{v_1} = 10\,\eta$, ten times Adam's first step, whose division by
#   $1-\beta_2^t$ removes exactly this start-up bias.
# - Momentum and Nesterov start slower than plain SGD (their rate is 5 times smaller and the
#   velocity needs some steps to build up); {{momentum_catch_up}}.
# - SGD-HD's rate went {{sgdhd_direction}} from its start of 0.01 to {{sgdhd_final:.2e}}:
#   with mini-batches, successive gradients are partly noise, so the hypergradient
#   $g_t \cdot u_{t-1}$ is a noisy signal and a rate that follows it can drift the wrong way.
# - AdamW's decay is tiny at this scale ($\eta\lambda = 10^{-5}$ per step), so it tracks Adam
#   (the two curves lie on top of each other: dashed with squares, solid with circles).
#
# With one short run per optimizer, differences of a percent or so in accuracy are within
# the noise of the seed: rerun with another seed before believing them.

# %%
def smooth(values, a=0.9 if SMALL else 0.97):
    s, out = 0.0, []
    for t, value in enumerate(values, start=1):
        s = a * s + (1 - a) * value
        out.append(s / (1 - a ** t))
    return np.array(out)


smoothed = {name: smooth(run[0]) for name, run in mlp_runs.items()}
early = min(30, len(smoothed["SGD"]))
early_best = sorted(smoothed, key=lambda n: smoothed[n][early - 1])[:3]
claim(set(early_best) <= {"RMSprop", "Adam", "AdamW", "AdamHD"},
      "the three lowest early losses are adaptive methods")
rms = smoothed["RMSprop"]
claim(rms[:early].max() > rms[0], "RMSprop's loss first jumps up")
behind = [k for k in range(len(smoothed["SGD"]))
          if min(smoothed["momentum"][k], smoothed["Nesterov"][k]) < smoothed["SGD"][k]]
claim(smoothed["momentum"][early - 1] > smoothed["SGD"][early - 1],
      "momentum starts slower than plain SGD")
sgdhd_final = mlp_runs["SGDHD"][1][-1]
record(early=early, early_best=", ".join(early_best), rms_peak=rms[:early].max(),
       rms_start=rms[0], sgdhd_final=sgdhd_final,
       sgdhd_direction="down" if sgdhd_final < 0.01 else "up",
       momentum_catch_up=(f"the first of them passes SGD's smoothed loss at batch {behind[0] + 1}"
                          if behind else "in this short run neither catches up with it"))

fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [2, 1]})
names = list(mlp_runs)
for name in names:
    ax.plot(np.arange(1, len(smoothed[name]) + 1), smoothed[name], label=name, lw=1.2,
            **STYLES[name])
ax.set_xscale("log")
ax.set_xlabel("mini-batch (log scale)")
ax.set_ylabel("training loss (smoothed)")
ax.set_ylim(0.2, 2.4)
ax.legend(fontsize=8, ncol=2)
ax.set_title("Training loss")
accuracies = [mlp_runs[n][2]["accuracy"] for n in names]
bx.barh(names, accuracies, color=[STYLES[n]["color"] for n in names])
bx.set_xlim(min(accuracies) - 0.05, min(1.0, max(accuracies) + 0.02))
bx.invert_yaxis()
bx.set_xlabel("validation accuracy")
bx.set_ylabel("optimizer")
bx.set_title("After training")
fig.suptitle("The lab MLP on Fashion-MNIST with each optimizer")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Try it
#
# - Raise SGD's rate on the quadratic to 0.081 (just above $2/\lambda_{max}$) and watch it
#   diverge. Start SGD-HD at 0.0005: does it still find a good rate?
# - On the quadratic, give momentum the values theory says are best for a quadratic with
#   eigenvalues $\lambda_{min} = 1$, $\lambda_{max} = 25$:
#   $\eta = 4/(\sqrt{\lambda_{max}} + \sqrt{\lambda_{min}})^2 \approx 0.111$ and
#   $\mu = \big((\sqrt{\kappa} - 1)/(\sqrt{\kappa} + 1)\big)^2 \approx 0.444$. The error then
#   shrinks by about $(\sqrt\kappa - 1)/(\sqrt\kappa + 1) = 2/3$ per step, against
#   $(\kappa - 1)/(\kappa + 1) \approx 0.92$ for the best plain SGD.
# - Set `momentum=0.99` and see the spiral on the quadratic grow.
# - On the MLP, give Adam `lr=1e-2` and SGD `lr=1e-3`: which one suffers more?
# - Tutorial 5 lets Optuna choose the optimizer, the rate and the batch size for you.

# %% [markdown]
# ## Exercises
#
# Fill in each function, run its cell, and read what the check says: it runs your function
# beside minidl's own implementation and names what differs. (Worked solutions are in
# `docs/tutorials/solutions/ex04.py`; try first.)
#
# **1. SGD with momentum.** One step of SGD with heavy-ball or Nesterov momentum (the
# table above): return the new `theta` and the new buffer `buf` (it starts at zeros).

# %%
from tutorial.ex04 import check_sgd_step, check_adam_step


def sgd_step(theta, grad, buf, lr, momentum, nesterov):
    raise NotImplementedError          # your code here


check_sgd_step(sgd_step)

# %% [markdown]
# **2. Adam.** One Adam step at step number `t` (from 1): return `(theta, m, v)`.

# %%
def adam_step(theta, grad, m, v, t, lr, beta1, beta2, eps):
    raise NotImplementedError          # your code here


check_adam_step(adam_step)

# %% [markdown]
# Next: [5. The lab's study](05-lab-study.ipynb).
