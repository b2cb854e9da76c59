"""Solutions to notebook 8's exercises, and wrong answers the checks must reject."""
import numpy as np


def batchnorm_backward(dout, x_hat, invstd, gamma):
    n = len(dout)
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx = gamma * invstd / n * (n * dout - dbeta - x_hat * dgamma)
    return dx, dgamma, dbeta


def batchnorm_backward_constant_stats(dout, x_hat, invstd, gamma):
    return gamma * invstd * dout, (dout * x_hat).sum(axis=0), dout.sum(axis=0)


def running_stats(running_mean, running_var, x, momentum):
    mean = (1 - momentum) * running_mean + momentum * x.mean(axis=0)
    var = (1 - momentum) * running_var + momentum * x.var(axis=0, ddof=1)
    return mean, var


def running_stats_biased(running_mean, running_var, x, momentum):
    mean = (1 - momentum) * running_mean + momentum * x.mean(axis=0)
    var = (1 - momentum) * running_var + momentum * x.var(axis=0)
    return mean, var


SOLUTIONS = {
    "check_batchnorm_backward": (batchnorm_backward, [batchnorm_backward_constant_stats]),
    "check_running_stats": (running_stats, [running_stats_biased]),
}
