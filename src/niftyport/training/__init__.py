"""Training and fine-tuning with NiftyNet 0.6.0's semantics, in PyTorch.

* :mod:`.optimisers`: NiftyNet's optimisers as TensorFlow 1's kernels compute them;
* :mod:`.losses`: ``niftynet/layer/loss_segmentation.py``'s losses;
* :mod:`.batchnorm`: batch norm in training mode, TF's zero-debiased moving averages;
* :mod:`.state`: every training variable under NiftyNet's name (model, slots, beta powers,
  debias accumulators): restore by ``vars_to_restore``, freeze by ``vars_to_freeze``, write checkpoints;
* :mod:`.loop`: one training step, one validation step;
* :mod:`.regularisation`: ``[NETWORK] decay`` as NiftyNet adds it;
* :mod:`.sampling`, :mod:`.augmentation`, :mod:`.sampler`: window centres (uniform, weighted,
  balanced), NiftyNet's flip / scaling / rotation, batches with a prefetching thread;
* :mod:`.validation`: the data split, Dice, early stopping;
* :mod:`.checkpoints`, :mod:`.curves`: complete checkpoints and resuming, the PNG of the curves;
* :mod:`.settings`, :mod:`.data`, :mod:`.run`: the ``[TRAINING]`` section, the volumes,
  ``niftyport train`` (what is not supported is refused by name).
* :mod:`.finetune` (:func:`finetune`, :class:`FinetuneOptions`), :mod:`.demo`: ``niftyport finetune``
  and its ``--demo``.

Layouts: torch's ``(N, C, X, Y, Z)`` for tensors given to the network and
losses; NiftyNet's ``(N, X, Y, Z, C)`` where a docstring says so.
"""

from .finetune import FinetuneOptions, finetune  # noqa: E402  (the package's function; the module stays importable)

__all__ = ["FinetuneOptions", "finetune"]
