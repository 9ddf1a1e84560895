"""PLACEHOLDER — replaced by the batch-norm kernel work (issue 4). Contract (channel = last axis):

batchnorm_train_forward(x, gamma, beta, eps) -> (y, cache, batch_mean, batch_var_biased)
batchnorm_eval_forward(x, gamma, beta, running_mean, running_var, eps) -> (y, cache)
batchnorm_backward(dy, cache, need_dx=True) -> (dx or None, dgamma, dbeta)   (either mode's cache)
"""
def batchnorm_train_forward(x, gamma, beta, eps): raise NotImplementedError
def batchnorm_eval_forward(x, gamma, beta, running_mean, running_var, eps): raise NotImplementedError
def batchnorm_backward(dy, cache, need_dx=True): raise NotImplementedError
