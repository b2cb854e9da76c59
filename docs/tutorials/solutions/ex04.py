"""Solutions to notebook 4's exercises, and wrong answers the checks must reject."""
import numpy as np


def sgd_step(theta, grad, buf, lr, momentum, nesterov):
    buf = momentum * buf + grad
    direction = grad + momentum * buf if nesterov else buf
    return theta - lr * direction, buf


def sgd_step_nesterov_as_heavy_ball(theta, grad, buf, lr, momentum, nesterov):
    buf = momentum * buf + grad
    return theta - lr * buf, buf


def adam_step(theta, grad, m, v, t, lr, beta1, beta2, eps):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad ** 2
    m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
    return theta - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


def adam_step_no_bias_correction(theta, grad, m, v, t, lr, beta1, beta2, eps):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad ** 2
    return theta - lr * m / (np.sqrt(v) + eps), m, v


SOLUTIONS = {
    "check_sgd_step": (sgd_step, [sgd_step_nesterov_as_heavy_ball]),
    "check_adam_step": (adam_step, [adam_step_no_bias_correction]),
}
