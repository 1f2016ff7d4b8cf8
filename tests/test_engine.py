"""The stacked-slot engine against plain Keras: a trial trained in a slot gives the curves, best
epoch and epochs of its real-shape ``Sequential`` trained alone with ``model.fit`` on the same
batches (``shuffle=False``) from the same initial weights, within 1e-5 (float32).

Dropout: the engine draws its masks from its own generator, so exactness is tested with
dropout 0 and dropout > 0 with a statistical test (training-mode loss over many mask draws).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from regsweep.data import from_arrays, make_rings  # noqa: E402
from regsweep.space import TrialConfig  # noqa: E402

TOL = 1e-5


def _config(regularizer="none", lam=0.0, depth=1, width=8, patience=2, *, max_epochs=8, lr=0.05,
            optimizer="adam", clipnorm=None, dropout=0.0) -> TrialConfig:
    return TrialConfig(regularizer, lam, dropout, depth, width, patience, max_epochs=max_epochs, batch_size=32,
                       optimizer=optimizer, learning_rate=lr, clipnorm=clipnorm)


def _reference(config, data, seed):
    """The plain Keras run: train_config's model and seed rule, fit on the batches in order."""
    from regsweep.models import build_model

    keras.utils.set_random_seed(seed)
    model = build_model(config, data)
    stop = keras.callbacks.EarlyStopping(monitor="val_data_loss", patience=config.patience, restore_best_weights=True)
    history = model.fit(data.x_train, data.y_train, batch_size=config.batch_size, epochs=config.max_epochs,
                        shuffle=False, validation_data=(data.x_val, data.y_val), callbacks=[stop], verbose=0)
    return history.history, model


def _engine(data, configs, *, slots, depth, width, seeds=None, **bucket_options):
    """Train ``configs`` through one trainer of ``slots`` slots (refilled in order); results by index."""
    from regsweep.engine import Bucket, SlotRequest, SlotTrainer

    options = {"optimizer": configs[0].optimizer, "dropout": False, **bucket_options}
    bucket = Bucket(int(np.prod(data.input_shape)), depth, width, data.output_units, data.task, **options)
    trainer = SlotTrainer(bucket, data, slots=slots, batch_size=32)
    queue = [SlotRequest(c, seed=(seeds or range(100, 200))[i], tag=i) for i, c in enumerate(configs)]
    results, exported, order = {}, {}, []

    def on_finished(slot, result):
        results[result.request.tag] = result
        order.append((trainer.epochs_run, slot))
        if result.weights is not None:
            exported[result.request.tag] = trainer.export(slot)

    trainer.run(lambda: queue.pop(0) if queue else None, on_finished)
    return trainer, results, exported, order


def _compare(config, data, seed, result, exported=None):
    history, model = _reference(config, data, seed)
    for ours, theirs in ((result.val_curve, "val_data_loss"), (result.train_curve, "data_loss"),
                         (result.loss_curve, "loss"), (result.val_metric_curve, "val_metric")):
        assert len(ours) == len(history[theirs])
        np.testing.assert_allclose(ours, history[theirs], rtol=0, atol=TOL, err_msg=theirs)
    best = int(np.argmin(history["val_data_loss"])) + 1
    assert result.best_epoch == best
    assert result.epochs == len(history["val_data_loss"])
    if exported is not None:  # a plain Sequential of the real shape holding the restored best weights
        assert [w.shape for w in exported.get_weights()] == [w.shape for w in model.get_weights()]
        for ours, theirs in zip(exported.get_weights(), model.get_weights()):
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOL)
        logs = exported.evaluate(data.x_val, data.y_val, verbose=0, return_dict=True)
        assert abs(logs["data_loss"] - result.val_loss) < TOL
    return history


@pytest.mark.parametrize("config", [_config("l2", 1e-3, depth=3, width=7, dropout=0.3),
                                    _config("l1_l2", 1e-3, depth=1, width=16),
                                    _config("none", 0.0, depth=2, width=5, dropout=0.1, clipnorm=1.0)])
def test_initial_weights_are_build_models(config):
    """The slot's initial weights equal those of build_model after set_random_seed (train_config's rule)."""
    from regsweep.engine import initial_weights
    from regsweep.models import build_model

    for data in (make_rings(n=60, seed=0), from_arrays(np.eye(12, 5) @ np.ones((5, 5)), np.arange(12) % 3, seed=0)):
        ours = initial_weights(config, data, seed=11)
        keras.utils.set_random_seed(11)
        theirs = build_model(config, data).get_weights()
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(initial_weights(config, data, seed=12)[0], ours[0])


def test_initial_weights_leave_tensorflows_global_seed_alone():
    """A new trial's weights are drawn without tf.random.set_seed: it clears TensorFlow's kernel
    caches, and every compiled epoch would then be instantiated again (0.55 s instead of 0.04 s).
    They still equal build_model's after set_random_seed, whatever seed an earlier trial left."""
    import tensorflow as tf

    from regsweep.engine import initial_weights
    from regsweep.models import build_model

    config, data = _config("l2", 1e-3, depth=2, width=6, dropout=0.2), make_rings(n=60, seed=0)
    keras.utils.set_random_seed(999)  # an earlier trial's seed
    ours = initial_weights(config, data, seed=11)
    assert tf.compat.v1.random.get_seed(None)[0] == 999
    keras.utils.set_random_seed(11)
    for a, b in zip(ours, build_model(config, data).get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_clear_kernel_caches_clears_tensorflows_kernel_caches(stateful_draw):
    from regsweep.engine import clear_kernel_caches

    clear_kernel_caches()
    first = stateful_draw()
    assert stateful_draw() != first  # the cached kernel advanced
    clear_kernel_caches()
    assert stateful_draw() == first  # a new kernel: the caches were cleared


@pytest.fixture(scope="module")
def rings():
    return make_rings(n=150, seed=1)


@pytest.fixture(scope="module")
def adam_run(rings):
    """Every regularizer kind, depth 1..3, widths 3..16 in a depth-3 width-16 bucket; 3 slots refilled."""
    configs = [
        _config("none", 0.0, depth=1, width=3, patience=1, lr=0.1),
        _config("l1", 1e-3, depth=2, width=16, patience=1),
        _config("l2", 1e-2, depth=3, width=9, patience=2),
        _config("l1_l2", 1e-3, depth=2, width=5, patience=1, lr=0.1),
        _config("l2", 3e-3, depth=1, width=12, patience=0, max_epochs=5),
        _config("l1", 1e-2, depth=3, width=16, patience=3, lr=0.02),
    ]
    return configs, _engine(rings, configs, slots=3, depth=3, width=16)


@pytest.mark.parametrize("index", range(6))
def test_adam_slot_equals_model_fit(rings, adam_run, index):
    configs, (_, results, exported, _) = adam_run
    _compare(configs[index], rings, 100 + index, results[index], exported.get(index))


def test_refills_happen_mid_run_without_retracing(adam_run):
    configs, (trainer, results, _, order) = adam_run
    assert len(results) == len(configs) == 6
    assert order[0][0] < max(epoch for epoch, _ in order)  # slots finished at different epochs and were refilled
    assert {r.reason for r in results.values()} >= {"patience"}  # early stopping really ended some trials
    assert trainer.retraces == 0



def test_an_epoch_computes_only_the_running_slots(rings):
    """Two running slots among four each train exactly as alone in a one-slot trainer, the idle
    and released slots' rows (weights, optimizer state, steps) are left as they were, and a
    changing number of running slots uses the one trace."""
    from regsweep.engine import Bucket, SlotTrainer

    bucket = Bucket(2, 2, 16, 1, "binary", dropout=False)
    configs = {3: (_config("l2", 1e-3, depth=2, width=12, patience=50, max_epochs=50), 5),
               1: (_config("l1", 1e-2, depth=1, width=16, patience=50, max_epochs=50, lr=0.1), 9)}
    shared = SlotTrainer(bucket, rings, slots=4, batch_size=32)
    alone = {slot: SlotTrainer(bucket, rings, slots=1, batch_size=32) for slot in configs}
    for slot, (config, seed) in configs.items():
        alone[slot].assign(0, config, seed=seed)
        shared.assign(slot, config, seed=seed)
    shared.assign(0, configs[3][0], seed=6)
    shared.train_epoch()
    shared.prune(0)  # released after one epoch: its row keeps the weights it had
    for trainer in alone.values():
        trainer.train_epoch()
    released = [np.array(v[0]) for v in shared.layer.weight_list()]
    traces = shared.retraces  # the one-slot trainers' first epochs may generalise the shared functions
    for _ in range(3):
        ours = shared.train_epoch()
        for slot, trainer in alone.items():
            theirs = trainer.train_epoch()
            for name in ("loss", "data_loss", "val_data_loss"):
                np.testing.assert_allclose(ours[name][slot], theirs[name][0], rtol=0, atol=1e-6, err_msg=name)
        assert ours["loss"][0] == ours["data_loss"][2] == 0.0  # not trained (validation covers every slot)
    for i, variable in enumerate(shared.layer.weight_list()):
        for slot, trainer in alone.items():
            np.testing.assert_allclose(np.array(variable[slot]), np.array(trainer.layer.weight_list()[i][0]),
                                       rtol=0, atol=1e-6)
        assert not np.any(np.array(variable[2]))
        np.testing.assert_array_equal(np.array(variable[0]), released[i])
    steps, per_epoch = np.array(shared.optimizer.steps), int(np.ceil(len(rings.x_train) / 32))
    assert list(steps) == [per_epoch, 4 * per_epoch, 0, 4 * per_epoch]
    assert shared.retraces == traces  # 3 running slots, then 2: the same trace


def test_buckets_of_one_depth_share_one_trace_and_agree(rings):
    """A width-16 and a width-32 bucket of one depth (different K) run the same compiled epoch
    program, traced once, and a width-12 trial masked into either gives the same curves."""
    from regsweep.engine import Bucket, SlotTrainer

    config = _config("l1_l2", 1e-3, depth=2, width=12, patience=50, max_epochs=50)
    narrow = SlotTrainer(Bucket(2, 2, 16, 1, "binary", dropout=False, clipnorm=True), rings, slots=2, batch_size=32)
    wide = SlotTrainer(Bucket(2, 2, 32, 1, "binary", dropout=False, clipnorm=True), rings, slots=5, batch_size=32)
    narrow.assign(1, config, seed=3)
    wide.assign(4, config, seed=3)
    for _ in range(3):
        ours, theirs = narrow.train_epoch(), wide.train_epoch()
        for name in ("loss", "val_data_loss", "val_metric"):
            np.testing.assert_allclose(ours[name][1], theirs[name][4], rtol=0, atol=1e-6, err_msg=name)
    assert narrow._compiled is wide._compiled
    assert narrow._compiled.program.experimental_get_tracing_count() == 1


def test_sweep_buckets_are_one_per_depth_as_wide_as_the_space():
    from regsweep.engine import space_buckets
    from regsweep.space import SearchSpace

    data = make_rings(n=40, seed=0)
    shapes = [(b.depth, b.width) for b in space_buckets(SearchSpace(depth=(1, 3), width=(4, 100)), data)]
    assert shapes == [(1, 128), (2, 128), (3, 128)]
    assert [(b.depth, b.width) for b in space_buckets(SearchSpace(depth=(2, 2), width=(2, 8)), data)] == [(2, 8)]
    assert [(b.depth, b.width) for b in space_buckets(SearchSpace(depth=(1, 1), width=(2, 20)), data)] == [(1, 32)]


def test_an_epoch_computes_only_up_to_the_widest_running_trial(rings):
    """A width-12 trial in a width-128 trainer trains as in a width-16 one, alone (the epoch cuts
    the slots to 16 units) and while a width-100 trial runs beside it (cut to 128): same curves,
    and the units past each trial's width stay exact zeros. The running width changes without a
    retrace."""
    from regsweep.engine import Bucket, SlotTrainer

    narrow_config = _config("l2", 1e-3, depth=2, width=12, patience=50, max_epochs=50)
    wide_config = _config("l1", 1e-3, depth=2, width=100, patience=50, max_epochs=50)
    small = SlotTrainer(Bucket(2, 2, 16, 1, "binary", dropout=False), rings, slots=1, batch_size=32)
    large = SlotTrainer(Bucket(2, 2, 128, 1, "binary", dropout=False), rings, slots=3, batch_size=32)
    small.assign(0, narrow_config, seed=4)
    large.assign(2, narrow_config, seed=4)
    widths = []
    for epoch in range(4):
        if epoch == 2:
            large.assign(0, wide_config, seed=5)
        if epoch == 1:
            traces = large.retraces
        widths.append(large.running_width())
        ours, theirs = large.train_epoch(), small.train_epoch()
        for name in ("loss", "data_loss", "val_data_loss", "val_metric"):
            np.testing.assert_allclose(ours[name][2], theirs[name][0], rtol=0, atol=1e-6, err_msg=name)
    assert widths == [16, 16, 128, 128]
    assert large.retraces == traces
    kernels = [np.array(v[2]) for v in large.layer.weight_list()]
    assert not np.any(kernels[0][:, 12:]) and not np.any(kernels[2][12:]) and not np.any(kernels[2][:, 12:])
    assert np.any(kernels[0][:, :12]) and not np.any(np.array(large.optimizer.slots["m"][2][2])[:, 12:])
    np.testing.assert_allclose(large.network(2).kernels()[1], small.network(0).kernels()[1], rtol=0, atol=1e-6)

def test_rmsprop_with_clipnorm_per_slot(rings):
    configs = [_config("l2", 1e-3, depth=2, width=8, optimizer="rmsprop", lr=0.02, clipnorm=0.05, max_epochs=5),
               _config("l1", 1e-3, depth=1, width=6, optimizer="rmsprop", lr=0.02, clipnorm=None, max_epochs=5),
               _config("none", 0.0, depth=2, width=4, optimizer="rmsprop", lr=0.02, clipnorm=1.0, max_epochs=5)]
    _, results, exported, _ = _engine(rings, configs, slots=3, depth=2, width=8, clipnorm=True)
    for i, config in enumerate(configs):
        _compare(config, rings, 100 + i, results[i], exported.get(i))


@pytest.mark.parametrize("activation", ["tanh", "elu", "gelu", "sigmoid"])
def test_the_hand_written_backward_pass_matches_model_fit_for_each_activation(rings, activation):
    """StackedMLP.gradients back-propagates the hidden layers by hand: through every activation,
    in a slot wider than the trial (masked units: sigmoid(0) is not 0) and deeper (a pass-through
    layer), it trains as model.fit."""
    configs = [dataclasses.replace(_config("l1_l2", 1e-3, depth=2, width=5, max_epochs=5), activation=activation),
               dataclasses.replace(_config("l2", 1e-3, depth=1, width=8, max_epochs=5), activation=activation)]
    _, results, exported, _ = _engine(rings, configs, slots=2, depth=2, width=8, activation=activation)
    for i, config in enumerate(configs):
        _compare(config, rings, 100 + i, results[i], exported.get(i))


def test_sgd_regression(rings):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(150, 3)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=150)).astype("float32")
    data = from_arrays(x, y, task="regression", seed=0)
    configs = [_config("l2", 1e-3, depth=2, width=8, optimizer="sgd", lr=0.01, max_epochs=6),
               _config("l1_l2", 1e-4, depth=1, width=4, optimizer="sgd", lr=0.02, max_epochs=6)]
    _, results, exported, _ = _engine(data, configs, slots=2, depth=2, width=8)
    for i, config in enumerate(configs):
        _compare(config, data, 100 + i, results[i], exported.get(i))


def test_adam_multiclass():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(150, 4)).astype("float32")
    y = np.argmax(x[:, :3] + 0.3 * rng.normal(size=(150, 3)), axis=1)
    data = from_arrays(x, y, task="multiclass", seed=0)
    configs = [_config("l1", 1e-3, depth=2, width=7, max_epochs=6, lr=0.05),
               _config("none", 0.0, depth=1, width=8, max_epochs=6, lr=0.05)]
    _, results, exported, _ = _engine(data, configs, slots=2, depth=2, width=8)
    for i, config in enumerate(configs):
        _compare(config, data, 100 + i, results[i], exported.get(i))


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression", "images"])
def test_a_slot_network_measures_as_its_keras_model(kind):
    """A finished slot is measured from its weights without building a Keras model (the export is
    built only for a kept model): outputs, parameter count, weight norms, the inference-mode train
    loss and the validation scores equal those of its exported Sequential."""
    from regsweep.engine import SlotNetwork, initial_weights
    from regsweep.models import count_params, dense_kernels, kernel_norms
    from regsweep.objective import inference_loss, validation_scores

    rng = np.random.default_rng(5)
    data = {"binary": lambda: make_rings(n=120, seed=0),
            "multiclass": lambda: from_arrays(rng.normal(size=(90, 5)), np.arange(90) % 3, task="multiclass", seed=0),
            "regression": lambda: from_arrays(rng.normal(size=(90, 4)), rng.normal(size=90), task="regression", seed=0),
            "images": lambda: from_arrays(rng.normal(size=(90, 6, 6)), np.arange(90) % 2, task="binary", seed=0)}[kind]()
    config = dataclasses.replace(_config("l2", 1e-3, depth=2, width=7, dropout=0.3), activation="tanh")
    network = SlotNetwork(config, data, initial_weights(config, data, seed=3))
    model = network.to_keras()
    np.testing.assert_allclose(network(data.x_val), model(data.x_val, training=False), rtol=0, atol=1e-6)
    assert network.count_params() == count_params(model)
    assert kernel_norms(network.kernels()) == pytest.approx(kernel_norms(dense_kernels(model)), rel=1e-6)
    assert inference_loss(network, data.x_train, data.y_train, data.loss) == \
        pytest.approx(inference_loss(model, data.x_train, data.y_train, data.loss), abs=1e-6)
    if data.task != "regression":  # finish_result records them for classification
        ours, theirs = validation_scores(network, data), validation_scores(model, data)
        assert ours and ours == pytest.approx(theirs, abs=1e-6)


def test_a_wrong_lambda_is_detected(rings):
    """The comparison can fail: the same run with λ x 3 in the slot is far from the reference."""
    config = _config("l1", 3e-3, depth=2, width=8, max_epochs=4, patience=5)
    wrong = dataclasses.replace(config, lam=config.lam * 3)
    _, results, _, _ = _engine(rings, [wrong], slots=1, depth=2, width=8)
    with pytest.raises(AssertionError):
        _compare(config, rings, 100, results[0])


def test_nan_and_external_prune_stop_one_slot(rings):
    from regsweep.engine import Bucket, SlotRequest, SlotTrainer

    trainer = SlotTrainer(Bucket(2, 2, 8, 1, "binary", dropout=False), rings, slots=2, batch_size=32)
    blowing_up = _config("l2", 1e-1, depth=2, width=8, lr=1e30, max_epochs=8)
    steady = _config("none", 0.0, depth=1, width=8, lr=0.01, max_epochs=8, patience=8)
    queue = [SlotRequest(blowing_up, 1, "nan"), SlotRequest(steady, 2, "pruned")]
    results = {}
    trainer.run(lambda: queue.pop(0) if queue else None, lambda slot, r: results.__setitem__(r.request.tag, r),
                on_epoch=lambda slot, epoch, logs: slot == 1 and epoch == 2)
    assert results["nan"].reason == "nan" and results["nan"].state == "failed" and results["nan"].weights is None
    assert results["pruned"].reason == "pruned" and results["pruned"].epochs == 3
    assert results["pruned"].weights is not None


def test_a_config_outside_its_bucket_is_refused(rings):
    from regsweep.engine import Bucket, EngineError, SlotTrainer

    trainer = SlotTrainer(Bucket(2, 2, 8, 1, "binary", dropout=False), rings, slots=1, batch_size=32)
    for config in (_config(width=9), _config(depth=3), _config(dropout=0.2), _config(optimizer="sgd"),
                   dataclasses.replace(_config(), batch_norm=True)):
        with pytest.raises(EngineError):
            trainer.assign(0, config)


def _dropout_losses(rate_engine, rate_keras, draws=300):
    """Training-mode data losses over ``draws`` dropout masks: the engine's slot and Keras' model
    (same initial weights, one batch)."""
    from regsweep.engine import Bucket, SlotTrainer
    from regsweep.models import build_model

    data = make_rings(n=150, seed=1)
    config = _config("none", 0.0, depth=2, width=16, dropout=rate_keras)
    keras.utils.set_random_seed(7)
    model = build_model(config, data)
    trainer = SlotTrainer(Bucket(2, 2, 16, 1, "binary", dropout=True), data, slots=1, batch_size=32, dropout_seed=3)
    trainer.assign(0, dataclasses.replace(config, dropout=rate_engine), seed=7)
    x, y = data.x_train[:64], data.y_train[:64]
    import tensorflow as tf

    layer, loss = trainer.layer, keras.losses.BinaryCrossentropy()
    engine_loss = tf.function(lambda: keras.ops.mean(layer.per_sample(layer.call(x, training=True), y)))
    keras_loss = tf.function(lambda: loss(y, model(x, training=True)))
    return (np.array([float(engine_loss()) for _ in range(draws)]),
            np.array([float(keras_loss()) for _ in range(draws)]))


def _z_score(a, b):
    return abs(a.mean() - b.mean()) / np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))


def test_the_hand_written_gradients_equal_a_tapes_with_dropout():
    """StackedMLP.gradients equals a GradientTape over the training forward pass and the penalty
    with the same dropout masks (the same stateless seed): dropout rates, L1/L2 and trials
    narrower and shallower than the bucket, after two epochs (biases no longer zero)."""
    import tensorflow as tf

    from regsweep.engine import Bucket, SlotTrainer

    data = make_rings(n=150, seed=1)
    trainer = SlotTrainer(Bucket(2, 3, 16, 1, "binary", dropout=True), data, slots=3, batch_size=32)
    for slot, config in enumerate([_config("l1_l2", 1e-2, depth=3, width=16, dropout=0.3),
                                   _config("l1", 1e-2, depth=1, width=5, dropout=0.5),
                                   _config("l2", 1e-2, depth=2, width=9, dropout=0.1)]):
        trainer.assign(slot, config, seed=slot)
    trainer.train_epoch()
    trainer.train_epoch()
    layer = trainer.layer
    params = [tf.convert_to_tensor(v.value) for v in layer.weight_list()]
    hyper = {name: tf.convert_to_tensor(v.value) for name, v in layer.slot_hyper().items()}
    x, y = tf.constant(data.x_train[:32]), tf.constant(data.y_train[:32])
    seed = tf.constant([3, 4], "int32")
    ours, data_total, rows = layer.gradients(params, hyper, x, y, seed)
    with tf.GradientTape() as tape:
        tape.watch(params)
        values = layer.per_sample(layer.forward(params, hyper, x, training=True, seed=seed), y)
        objective = keras.ops.sum(keras.ops.sum(values, axis=1) / rows + layer.penalty(params, hyper))
    theirs = tape.gradient(objective, params)
    np.testing.assert_allclose(data_total, keras.ops.sum(values, axis=1), rtol=0, atol=1e-6)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert np.any(np.asarray(b)), f"weight {i}: a zero gradient tests nothing"
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6, err_msg=f"weight {i}")


def test_dropout_matches_keras_statistically():
    """Different generators, same distribution: the mean (z < 4) and the spread (ratio within
    0.8-1.25) of the training-mode loss over 300 masks agree; a wrong rate in the engine fails it."""
    def same_distribution(ours, theirs):
        return _z_score(ours, theirs) < 4 and 0.8 < ours.std() / theirs.std() < 1.25

    assert same_distribution(*_dropout_losses(0.3, 0.3))
    assert not same_distribution(*_dropout_losses(0.1, 0.3))
