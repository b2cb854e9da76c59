"""Solutions to notebook 1's exercises, and wrong answers the checks must reject."""
import numpy as np


def linear_forward(x, W, b):
    return x @ W.T + b


def linear_forward_no_bias(x, W, b):
    return x @ W.T


def linear_backward(x, W, dout):
    return dout @ W, dout.T @ x, dout.sum(axis=0)


def linear_backward_mean_bias(x, W, dout):
    return dout @ W, dout.T @ x, dout.mean(axis=0)


def central_difference(f, x, eps):
    grad = np.zeros_like(x, dtype=float)
    for i in range(x.size):
        old = x.flat[i]
        x.flat[i] = old + eps
        up = f(x)
        x.flat[i] = old - eps
        down = f(x)
        x.flat[i] = old
        grad.flat[i] = (up - down) / (2 * eps)
    return grad


def forward_difference(f, x, eps):
    grad = np.zeros_like(x, dtype=float)
    base = f(x)
    for i in range(x.size):
        old = x.flat[i]
        x.flat[i] = old + eps
        grad.flat[i] = (f(x) - base) / eps
        x.flat[i] = old
    return grad


# check name -> (the solution, [wrong answers])
SOLUTIONS = {
    "check_linear_forward": (linear_forward, [linear_forward_no_bias]),
    "check_linear_backward": (linear_backward, [linear_backward_mean_bias]),
    "check_central_difference": (central_difference, [forward_difference]),
}
