"""PLACEHOLDER — replaced by the pooling kernel work (issue 3). Contract:

maxpool2d_forward(x, size=(FH, FW), stride=(SH, SW), pads=((t, b), (l, r))) -> (y, cache); maxpool2d_backward(dy, cache) -> dx
avgpool2d_forward(...) / avgpool2d_backward(dy, cache) -> dx    (divides by FH*FW, padding counted)
global_avgpool_forward(x) -> (y (N, C), cache); global_avgpool_backward(dy, cache) -> dx
"""
def maxpool2d_forward(x, size, stride, pads): raise NotImplementedError
def maxpool2d_backward(dy, cache): raise NotImplementedError
def avgpool2d_forward(x, size, stride, pads): raise NotImplementedError
def avgpool2d_backward(dy, cache): raise NotImplementedError
def global_avgpool_forward(x): raise NotImplementedError
def global_avgpool_backward(dy, cache): raise NotImplementedError
