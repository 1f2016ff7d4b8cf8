"""The stacked-slot training engine: K trials of one shape bucket train as one compiled graph.

``regsweep.engine.buckets`` is plain Python; importing this package imports Keras and TensorFlow
(the trainer and the stacked layer), so import it lazily from code that must stay light.

Example:
    >>> from regsweep.engine import SlotTrainer, bucket_for  # doctest: +SKIP
    >>> trainer = SlotTrainer(bucket_for(config, data, depth=4), data, slots=16, batch_size=50)  # doctest: +SKIP
"""

from regsweep.engine.buckets import Bucket, EngineError, bucket_for, bucket_width, space_buckets, unsupported
from regsweep.engine.stack import SlotOptimizer, StackedMLP
from regsweep.engine.trainer import (SlotNetwork, SlotRequest, SlotResult, SlotTrainer, clear_kernel_caches,
                                     initial_weights, to_keras)

__all__ = ["Bucket", "EngineError", "SlotNetwork", "SlotOptimizer", "SlotRequest", "SlotResult", "SlotTrainer",
           "StackedMLP", "bucket_for", "bucket_width", "clear_kernel_caches",
           "initial_weights", "space_buckets", "to_keras", "unsupported"]
