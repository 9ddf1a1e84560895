"""PLACEHOLDER — replaced by the conv kernel work (issue 3). Contract:

conv2d_forward(x, w, b, stride=(SH, SW), pads=((top, bottom), (left, right)), dilation=(DH, DW)) -> (y, cache)
    x (N, H, W, C), w (FH, FW, C, K), b (K,) or None -> y (N, H', W', K), same dtype as x
conv2d_backward(dy, cache, need_dx=True) -> (dx or None, dw, db or None)
"""
def conv2d_forward(x, w, b, stride=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1)):
    raise NotImplementedError
def conv2d_backward(dy, cache, need_dx=True):
    raise NotImplementedError
