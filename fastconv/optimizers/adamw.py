"""AdamW: Adam with decoupled weight decay, w -= lr * weight_decay * w before the Adam step
(Keras 3; the decay is scaled by the learning rate, as Keras does, not by lr alone)."""
from .adam import Adam


class AdamW(Adam):
    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **kwargs):
        if weight_decay is None:
            raise ValueError("AdamW needs a weight_decay (a float >= 0); use Adam for none")
        super().__init__(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad,
                         weight_decay=weight_decay, **kwargs)
