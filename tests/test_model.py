"""DIMMN's behaviour: shapes, attention, causality, memory window, gradients, training."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model.data import collate, dialogues
from model.dimmn import DIMMN, ModelConfig
from model.train import TrainConfig, train

DIMS = {"text": 12, "audio": 8, "visual": 10}


def make_store(n_dialogues=6, turns=8, speakers=2, seed=0, classes=3):
    """A synthetic store whose labels are visible in the features (so a model can learn them)."""
    rng = np.random.default_rng(seed)
    n = n_dialogues * turns
    label = rng.integers(0, classes, n)
    store = {"utterance_id": np.array([f"u{i}" for i in range(n)]),
             "dialogue_id": np.array([f"d{i // turns}" for i in range(n)]),
             "turn": np.array([i % turns for i in range(n)]),
             "speaker": np.array([f"s{i % turns if i % turns < speakers else rng.integers(speakers)}" for i in range(n)]),
             "split": np.array(["train" if i // turns < n_dialogues - 2 else "valid" if i // turns == n_dialogues - 2
                                else "test" for i in range(n)]),
             "label": label, "classes": np.array([f"c{i}" for i in range(classes)])}
    for m, d in DIMS.items():
        x = rng.normal(0, 1, (n, d)).astype(np.float32)
        x[np.arange(n), label] += 2.0
        store[m], store[f"{m}_present"] = x, np.ones(n, bool)
    return store


def batch_of(store, **config):
    cfg = ModelConfig(d=16, K=3, L=2, **config)
    torch.manual_seed(0)
    model = DIMMN(cfg, DIMS, len(store["classes"])).eval()
    return model, collate(store, dialogues(store, np.ones(len(store["label"]), bool)), cfg.modalities, "cpu")


def run(model, b):
    return model(b["feats"], b["present"], b["mask"], b["speakers"])


@pytest.mark.parametrize("speakers", [2, 5])
@pytest.mark.parametrize("mode", ["dimmn", "utterance", "bclstm"])
def test_shapes_for_any_number_of_speakers(speakers, mode):
    store = make_store(n_dialogues=3, turns=9, speakers=speakers)
    model, b = batch_of(store, mode=mode)
    assert int(b["speakers"].max()) == speakers - 1
    assert run(model, b).shape == (3, 9, 3)


@pytest.mark.parametrize("attention", ["matrix", "hadamard"])
def test_attention_weights_sum_to_one(attention):
    model, b = batch_of(make_store(), attention=attention)
    run(model, b)
    for level in model.fusion.last_attention:
        assert torch.allclose(level.sum(-1), torch.ones_like(level.sum(-1)), atol=1e-5)
    att = model.last_memory_attention[0]
    sums = att.sum(-1)[b["mask"]]
    assert torch.allclose(sums[sums > 0], torch.ones_like(sums[sums > 0]), atol=1e-5)


def test_tcn_is_causal_and_sees_only_its_speaker():
    store = make_store(n_dialogues=1, turns=10)
    store["speaker"] = np.array(list("ABABBABAAB"))
    model, b = batch_of(store)
    U = torch.randn(1, 10, 16)
    base = model.speaker_context(U, b["speakers"], b["mask"])
    later_a = U.clone()
    later_a[0, 7] += 5.0                                   # A's 5th utterance
    out = model.speaker_context(later_a, b["speakers"], b["mask"])
    a_rows = [i for i, s in enumerate("ABABBABAAB") if s == "A"]
    assert torch.allclose(out[0, [i for i in a_rows if i < 7]], base[0, [i for i in a_rows if i < 7]])
    assert not torch.allclose(out[0, 7], base[0, 7])
    b_rows = [i for i, s in enumerate("ABABBABAAB") if s == "B"]
    assert torch.allclose(out[0, b_rows], base[0, b_rows])  # B never sees A's utterances


@pytest.mark.parametrize("context", ["tcn", "gru"])
def test_direction_both_reads_later_utterances_and_forward_does_not(context):
    store = make_store(n_dialogues=1, turns=8)
    later = {}
    for direction in ("forward", "both"):
        model, b = batch_of(store, direction=direction, context=context)
        base = run(model, b)
        b["feats"]["text"][0, 6] += 5.0                    # change the 7th utterance only
        later[direction] = not torch.allclose(run(model, b)[0, :6], base[0, :6])
    assert later == {"forward": False, "both": True}


@pytest.mark.parametrize("window, size", [("past", 0), ("past", 2), ("all", 0)])
def test_memory_reads_only_its_window(window, size):
    model, b = batch_of(make_store(n_dialogues=1, turns=8), window=window, window_size=size)
    run(model, b)
    for att in model.last_memory_attention:
        read = att[0] > 0
        for t in range(8):
            allowed = set(range(8)) if window == "all" else set(range(max(0, t - size) if size else 0, t))
            assert set(torch.nonzero(read[t]).flatten().tolist()) <= allowed
        if window == "past":
            assert not read[0].any()


def test_absent_modality_cannot_pass_garbage():
    store = make_store(n_dialogues=1, turns=6)
    store["audio_present"][2] = False
    model, b = batch_of(store)
    base = run(model, b)
    b["feats"]["audio"][0, 2] = 1e4
    assert torch.allclose(run(model, b), base)


@pytest.mark.parametrize("config", [{}, {"context": "gru"}, {"fusion": "concat"}, {"views": "TV+AV"},
                                    {"mode": "bclstm"}, {"modalities": ["text"]}])
def test_every_parameter_gets_a_gradient(config):
    model, b = batch_of(make_store(), **config)
    model.train()
    logits = run(model, b)
    torch.nn.functional.cross_entropy(logits[b["mask"]], b["labels"][b["mask"]]).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_a_tiny_batch_overfits():
    store = make_store(n_dialogues=2, turns=6)
    store["split"][:] = "train"
    _, history, summary = train(store, ModelConfig(d=16, K=3, L=2, dropout=0.0),
                                TrainConfig(epochs=150, patience=150, lr=0.01), progress=False)
    assert history[-1]["train_acc"] == 100.0 and history[-1]["loss"] < 0.05


def test_same_seed_same_metrics_and_resume(tmp_path):
    store = make_store()
    cfg = TrainConfig(epochs=6, patience=6, seed=3)
    _, h1, s1 = train(store, ModelConfig(d=16, K=3, L=2), cfg, progress=False)
    _, h2, s2 = train(store, ModelConfig(d=16, K=3, L=2), cfg, progress=False)
    assert h1 == h2 and s1 == s2
    # stop after 3 epochs, then resume to 6: the same history as one run
    ckpt = tmp_path / "m.pt"
    train(store, ModelConfig(d=16, K=3, L=2), TrainConfig(epochs=3, patience=6, seed=3), checkpoint=ckpt, progress=False)
    _, h3, _ = train(store, ModelConfig(d=16, K=3, L=2), TrainConfig(epochs=6, patience=6, seed=3, resume=True),
                     checkpoint=ckpt, progress=False)
    assert [round(h["loss"], 5) for h in h3] == [round(h["loss"], 5) for h in h1]


def test_store_without_valid_split_holds_out_train_dialogues():
    store = make_store(n_dialogues=10)
    store["split"][store["split"] == "valid"] = "train"
    _, _, summary = train(store, ModelConfig(d=16, K=3, L=2), TrainConfig(epochs=1), progress=False)
    assert summary["valid_utterances"] == 8 and summary["train_utterances"] == 8 * 8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_trains_on_cuda_with_auto_device():
    _, history, summary = train(make_store(), ModelConfig(d=16), TrainConfig(epochs=2, amp=True), progress=False)
    assert summary["device"].startswith("cuda") and np.isfinite(history[-1]["loss"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_runs_with_one_seed_are_identical():
    runs = [train(make_store(), ModelConfig(d=16), TrainConfig(epochs=3, device="cuda"), progress=False)
            for _ in range(2)]
    (first, _, _), (second, _, _) = runs
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name


def test_torchrun_ddp_two_gloo_processes(tmp_path):
    store = make_store(n_dialogues=8)
    np.savez(tmp_path / "store.npz", **store)
    (tmp_path / "params.yaml").write_text("model: {d: 16, K: 3, L: 2}\n"   # gloo on CPU, also where there is a GPU
                                          "train: {epochs: 3, patience: 3, batch_size: 2, device: cpu}\n")
    root = Path(__file__).resolve().parents[1]
    torchrun = Path(sys.executable).with_name("torchrun")
    done = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "--master_port", "29517", "-m", "pipeline", "train",
         "--params", str(tmp_path / "params.yaml"), "--store", str(tmp_path / "store.npz"),
         "--checkpoint", str(tmp_path / "m.pt"), "--history", str(tmp_path / "h.csv"),
         "--summary", str(tmp_path / "s.json")],
        cwd=root, capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(root)))
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["world_size"] == 2 and summary["ddp_params_identical"] is True
    assert done.stdout.count("train: best valid") == 1   # one set of outputs, from rank 0


@pytest.mark.parametrize("config", [{"mode": "bclstm"}, {}, {"direction": "both", "window": "all"},
                                    {"direction": "both", "context": "gru"}])
def test_a_dialogues_logits_do_not_depend_on_its_batch(config):
    store = make_store(n_dialogues=3)
    keep = np.ones(len(store["label"]), bool)
    keep[(store["dialogue_id"] == "d0") & (store["turn"] >= 5)] = False   # d0 shorter than d1
    model, _ = batch_of(store, **config)
    groups = dialogues(store, keep)
    alone = run(model, collate(store, groups[:1], model.modalities, "cpu"))[0, :5]
    beside = run(model, collate(store, groups[:2], model.modalities, "cpu"))[0, :5]   # padded to d1's length
    assert torch.allclose(alone, beside, atol=1e-6)


@pytest.mark.parametrize("options", [{"kernel_size": 3, "padding": 2}, {"kernel_size": 2, "dilation": 3},
                                     {"kernel_size": 5, "dilation": 2, "padding": 4, "bias": False},
                                     {"kernel_size": 1}, {"kernel_size": 3, "stride": 2}])
def test_the_matrix_product_convolution_is_torch_s_convolution(options):
    from torch import nn

    from model.layers import GemmConv1d

    torch.manual_seed(0)
    plain = nn.Conv1d(6, 4, **options)
    gemm = GemmConv1d(6, 4, **options)
    gemm.load_state_dict(plain.state_dict())          # the same parameters: old checkpoints still load
    x = torch.randn(3, 6, 17, requires_grad=True)
    want, got = plain(x), gemm(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5)
    for a, b in zip(torch.autograd.grad(want.square().sum(), [x, plain.weight]),
                    torch.autograd.grad(got.square().sum(), [x, gemm.weight])):
        assert torch.allclose(a, b, atol=1e-4)


TRAIN_STEPS = """
import torch
from extractors.text import KimCNN, TextConfig
from model.dimmn import TCNBlock
KimCNN(torch.randn(30, 100), TextConfig(), 4)(torch.randint(0, 30, (50, 20))).sum().backward()
TCNBlock(16, 3, 2, 0.0)(torch.randn(4, 16, 12, requires_grad=True), torch.ones(4, 1, 12)).sum().backward()
"""


def test_the_trained_networks_convolve_without_onednn():
    """oneDNN picks its convolution kernel for the CPU it finds, so two machines train apart: a
    training step of the text CNN and of the speaker TCN must not reach it (pipeline.numerics).
    torch's own Conv1d, in the same process, does: the check can see it."""
    plain = "torch.nn.Conv1d(16, 16, 3)(torch.randn(50, 16, 20)).sum()\n"
    env = {**os.environ, "ONEDNN_VERBOSE": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    logs = []
    for script in (TRAIN_STEPS, TRAIN_STEPS + plain):
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
        assert run.returncode == 0, run.stderr[-2000:]
        logs.append(run.stdout + run.stderr)
    assert ",convolution," not in logs[0]
    assert ",convolution," in logs[1]


class _AtenOps(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the name of every ATen operator run inside it (with ``dtypes``, as "aten.sqrt
    float32": the operator and its first argument's type)."""

    def __init__(self, dtypes: bool = False):
        super().__init__()
        self.names, self.dtypes = set(), dtypes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.dtypes and args and torch.is_tensor(args[0]):
            self.names.add(f"{func.overloadpacket} {str(args[0].dtype).replace('torch.', '')}")
        else:
            self.names.add(str(func))
        return func(*args, **(kwargs or {}))


def _training_step_ops(model, *inputs) -> set:
    model.train()
    with _AtenOps() as ops:
        out = model(*inputs)
        (out[0] if isinstance(out, tuple) else out).float().sum().backward()
    return ops.names


@pytest.mark.parametrize("network", ["text_cnn", "dimmn", "bclstm", "utterance", "cnn3d", "plain"])
def test_training_draws_no_dropout_mask_from_the_vendor_s_generator(network):
    """torch's dropout draws its mask with bernoulli_(p): MKL's random streams on Intel CPUs, torch's
    own generator elsewhere, so one seed gave an AMD EPYC other masks than an Intel Xeon and the
    demo's text CNN trained apart. A training step of every network trained here must not reach
    that operator; torch's own nn.Dropout ("plain") does, so the check can see it."""
    from torch import nn

    from extractors.cnn3d import Small3DCNN
    from extractors.text import KimCNN, TextConfig

    torch.manual_seed(0)
    if network == "text_cnn":
        names = _training_step_ops(KimCNN(torch.randn(30, 100), TextConfig(), 4), torch.randint(0, 30, (8, 12)))
    elif network == "cnn3d":
        names = _training_step_ops(Small3DCNN(16, 3), torch.randn(2, 8 * 32 * 32))
    elif network == "plain":
        names = _training_step_ops(nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)), torch.randn(3, 4))
    else:
        store = make_store()
        model, b = batch_of(store, mode=network)
        names = _training_step_ops(model, b["feats"], b["present"], b["mask"], b["speakers"])
    drawn = {n for n in names if n.startswith(("aten.bernoulli", "aten.native_dropout"))}
    assert bool(drawn) == (network == "plain"), drawn


def test_the_portable_dropout_drops_scales_and_repeats():
    from torch import nn

    from model.layers import Dropout, portable_dropouts

    x = torch.ones(200, 500)
    layer = Dropout(0.3)
    torch.manual_seed(1)
    a = layer(x)
    torch.manual_seed(1)
    assert torch.equal(a, layer(x))                                   # one seed, one mask
    assert abs((a == 0).float().mean().item() - 0.3) < 0.01
    assert torch.allclose(a[a != 0], torch.full_like(a[a != 0], 1 / 0.7))
    assert torch.equal(layer.eval()(x), x) and torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    tree = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout(0.1), nn.ReLU()), nn.Dropout(0.2))
    portable_dropouts(tree)
    assert [type(m).__name__ for m in tree.modules()].count("Dropout") == 2
    assert all(isinstance(m, Dropout) for m in tree.modules() if isinstance(m, nn.Dropout))
    assert [m.p for m in tree.modules() if isinstance(m, Dropout)] == [0.1, 0.2]


def _optimiser_step_ops(optimiser_class, **options) -> tuple[set, torch.nn.Module]:
    model = torch.nn.Linear(6, 3)
    optimiser = optimiser_class(model.parameters(), lr=1e-2, **options)
    model(torch.randn(4, 6)).sum().backward()
    with _AtenOps(dtypes=True) as ops:
        optimiser.step()
    return ops.names, model


def test_adam_takes_its_square_root_alike_on_every_cpu():
    """torch's float32 sqrt is not correctly rounded on an AMD EPYC (about 1 value in 100,000 is
    1 ulp off), and Adam's first step divides by one: the demo's text CNN parted from the Intel
    Xeon's there (bench/numerics_trace.py). The optimiser every training loop here uses takes the
    root in float64; torch's own Adam ("the control") takes it in float32, so the check sees it."""
    from model.layers import Adam, AdamW

    for optimiser, options in ((Adam, {}), (Adam, {"weight_decay": 1e-3}), (AdamW, {"weight_decay": 1e-2})):
        names, _ = _optimiser_step_ops(optimiser, **options)
        assert "aten.sqrt float32" not in names and "aten.sqrt float64" in names, names
    assert "aten.sqrt float32" in _optimiser_step_ops(torch.optim.Adam)[0]   # the control


@pytest.mark.parametrize("options", [{}, {"weight_decay": 1e-3}, {"decoupled_weight_decay": True, "weight_decay": 1e-2}])
def test_adam_is_torch_s_adam_but_for_the_root(options):
    """The same update as torch's Adam / AdamW to float rounding, and the same state: a
    checkpoint of one loads into the other."""
    import copy

    from model.layers import Adam

    torch.manual_seed(0)
    ours = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    theirs = copy.deepcopy(ours)
    optimisers = [Adam(ours.parameters(), lr=1e-2, **options), torch.optim.Adam(theirs.parameters(), lr=1e-2, **options)]
    x, y = torch.randn(32, 10), torch.randint(0, 3, (32,))
    for _ in range(30):
        for model, optimiser in zip((ours, theirs), optimisers):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimiser.step()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    optimisers[1].load_state_dict(optimisers[0].state_dict())
    optimisers[0].load_state_dict(optimisers[1].state_dict())


def test_adam_keeps_its_state_for_float64_and_leaves_what_it_cannot_do_to_torch():
    """A float64 parameter's root must not be taken in place (its ``to(float64)`` is the state
    itself); complex parameters and sparse gradients take torch's own step, as do AdamW's
    defaults (weight decay 0.01, a positional lr)."""
    from model.layers import Adam, AdamW

    for dtype, make in ((torch.float64, lambda: torch.tensor([1.0, -2.0, 0.3], dtype=torch.float64)),
                        (torch.complex64, lambda: torch.tensor([1 + 2j, -0.5 + 0.1j]))):
        results = []
        for optimiser_class in (Adam, torch.optim.Adam):
            param = torch.nn.Parameter(make())
            optimiser = optimiser_class([param], lr=1e-2)
            for _ in range(3):
                optimiser.zero_grad()
                (param.abs() ** 3).sum().backward()
                optimiser.step()
            results.append(param.detach().clone())
        assert torch.allclose(*results, atol=1e-6), (dtype, results)
    embedding = torch.nn.Embedding(10, 3, sparse=True)
    embedding(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        Adam(embedding.parameters()).step()
    assert AdamW([torch.nn.Parameter(torch.ones(2))], 1e-3).defaults["weight_decay"] == 0.01
