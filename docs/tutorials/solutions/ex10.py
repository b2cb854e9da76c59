"""Solutions to notebook 10's exercises, and wrong answers the checks must reject."""
import numpy as np


def sgd_hd_step(theta, grad, grad_prev, lr, hypergrad_lr):
    lr = lr + hypergrad_lr * float(grad @ grad_prev)
    return theta - lr * grad, lr


def sgd_hd_step_wrong_sign(theta, grad, grad_prev, lr, hypergrad_lr):
    lr = lr - hypergrad_lr * float(grad @ grad_prev)
    return theta - lr * grad, lr


def _softmax(alpha):
    e = np.exp(alpha - alpha.max())
    return e / e.sum()


def alpha_gradient(alpha, outs, dout):
    w = _softmax(alpha)
    g = np.array([(dout * o).sum() for o in outs])
    return w * (g - (w * g).sum())


def alpha_gradient_without_softmax(alpha, outs, dout):
    return np.array([(dout * o).sum() for o in outs])


SOLUTIONS = {
    "check_sgd_hd_step": (sgd_hd_step, [sgd_hd_step_wrong_sign]),
    "check_alpha_gradient": (alpha_gradient, [alpha_gradient_without_softmax]),
}
