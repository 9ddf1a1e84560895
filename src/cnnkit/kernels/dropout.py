"""PLACEHOLDER — replaced by the dropout kernel work (issue 4). Contract:

dropout_forward(x, p, rng) -> (y, mask)     inverted dropout, survivors scaled by 1/(1-p)
dropout_backward(dy, mask) -> dx
"""
def dropout_forward(x, p, rng): raise NotImplementedError
def dropout_backward(dy, mask): raise NotImplementedError
