"""FCN*.predict: labels through upsample_argmax, equal to model(images).argmax(1) except at exact ties."""

import importlib.util

import pytest
import torch

import fcn_kernels
from _helpers.cli_args import TINY_MODEL, cli
from fcn_kernels.app.factory import kaiming_init
from fcn_kernels.models import FCN8s, FCN8sAtOnce, FCN16s, FCN32s

pytestmark = pytest.mark.skipif("cpu" not in fcn_kernels.available_backends(), reason="fcn_kernels._C was not built")

ARCHS = [FCN32s, FCN16s, FCN8s, FCN8sAtOnce]


def random_model(arch, fused, images, n_class=5):
    """A narrow model with every layer random (the reference's zero score layers would tie everywhere), its
    score layers centred on `images` so that no class wins everywhere."""
    model = arch(n_class, fused=fused, width=1 / 32, dropout=0.5).eval()
    kaiming_init(model)
    with torch.no_grad():
        for name in model.score_layer_names():
            getattr(model, name).weight.normal_(0, 1 / model.SKIP_SCALE.get(name[len("score_") :], 1.0))
        for name, scores in zip(model.score_layer_names(), model.scores(images)):
            getattr(model, name).bias.sub_(scores.mean((0, 2, 3)))
        # bilinear upsampling carries a constant through unchanged: centre the output itself
        model.score_fr.bias.sub_(model(images).mean((0, 2, 3)))
    return model


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.__name__)
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "stock"])
def test_predict_equals_forward_argmax(seed, arch, fused):
    images = torch.randn(2, 3, 37, 45)
    model = random_model(arch, fused, images).train()
    labels = model.predict(images)
    assert model.training  # restored
    assert labels.shape == (2, 37, 45) and labels.dtype == torch.int64
    model.eval()
    with torch.no_grad():
        scores = model(images)
    want = scores.argmax(1)
    top2 = scores.topk(2, dim=1).values
    tie = (top2[:, 0] - top2[:, 1]) <= 1e-5 * top2[:, 0].abs().clamp_min(1)
    assert ((labels == want) | tie).all()
    assert (labels == want).float().mean() > 0.99
    assert labels.unique().numel() > 1  # the test can tell labels apart


def test_predict_fused_is_the_cpu_upsample_argmax_of_the_same_scores(seed):
    """fused predict never builds the scores, yet gives exactly forward's argmax (same kernels' rounding)."""
    images = torch.randn(1, 3, 50, 33)
    model = random_model(FCN8s, True, images)
    with torch.no_grad():
        assert torch.equal(model.predict(images), model(images).argmax(1))


def test_predict_under_bfloat16_autocast(seed):
    images = torch.randn(1, 3, 29, 31)
    model = random_model(FCN16s, True, images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        labels = model.predict(images)
        with torch.no_grad():
            want = model(images).argmax(1)
    assert torch.equal(labels, want)


# ---- `fcn-kernels predict` ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny FCN-8s trained from scratch by `fcn-kernels train` (a few steps: labels vary, not accurate)."""
    from fcn_kernels.app.cli import main

    out = tmp_path_factory.mktemp("run")
    argv = cli(f"train --data synthetic {TINY_MODEL} --no-progress --train-size 4 --val-size 1 --batch-size 2")
    more = cli("--iters 3 --optimizer adam --lr 1e-3 --init kaiming --overlay-images 1 --out", out)
    assert main([*argv, *more]) == 0
    return out / "checkpoint.pt"


def write_images(folder, sizes):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for k, (h, w) in enumerate(sizes):
        path = folder / (f"img{k}.jpg" if k % 2 else f"img{k}.png")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def expected_labels(checkpoint, path, fused=True):
    import numpy as np
    from PIL import Image

    from fcn_kernels.app.factory import build_model
    from fcn_kernels.data import preprocess

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = build_model(ckpt["model_config"], fused=fused)
    model.load_state_dict(ckpt["model"])
    image = np.asarray(Image.open(path).convert("RGB"))
    return model.predict(preprocess(image, "rgb_norm")[None])[0].numpy()


def test_predict_command_writes_labels_and_overlays(tmp_path, checkpoint, capsys):
    import numpy as np
    from PIL import Image

    from fcn_kernels.app.cli import main

    paths = write_images(tmp_path, [(33, 41), (20, 27), (33, 41)])
    out = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                *map(str, paths),
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(out),
                "--batch-size",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "3 label map(s)" in capsys.readouterr().out
    for path in paths:
        with Image.open(out / f"{path.stem}.png") as im:
            assert im.mode == "P" and im.size == Image.open(path).size
            labels = np.asarray(im)
        assert labels.max() < 3
        assert np.array_equal(labels, expected_labels(checkpoint, path))
        with Image.open(out / f"{path.stem}_overlay.png") as ov:
            h, w = labels.shape
            scale = max(1, 256 // h)
            # two panels 4 px apart, a title row above them and the class legend below
            assert ov.size[0] == 2 * w * scale + 4 and ov.size[1] > h * scale
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{p.stem}{s}" for p in paths for s in (".png", "_overlay.png")
    )  # no temporary files left


def test_predict_command_stock_and_bfloat16(tmp_path, checkpoint):
    import numpy as np
    from PIL import Image

    from fcn_kernels.app.cli import main

    (path,) = write_images(tmp_path, [(29, 35)])
    for extra in (["--no-fused"], ["--dtype", "bfloat16"]):
        out = tmp_path / extra[-1]
        assert main(["predict", str(path), "--checkpoint", str(checkpoint), "--out", str(out), *extra]) == 0
        labels = np.asarray(Image.open(out / "img0.png"))
        assert labels.shape == (29, 35)
        if extra == ["--no-fused"]:
            assert (labels == expected_labels(checkpoint, path, fused=False)).mean() > 0.99


@pytest.mark.parametrize(
    "engine",
    [
        pytest.param(e, marks=pytest.mark.skipif(importlib.util.find_spec(e) is None, reason=f"{e} is not installed"))
        for e in ("openvino", "onnxruntime")
    ],
)
def test_predict_command_engine(tmp_path, checkpoint, capsys, engine):
    """--engine: the trunk in OpenVINO or ONNX Runtime gives the torch model's labels (but at near-ties of
    float32 scores summed in another order); bfloat16 is OpenVINO's alone."""
    import numpy as np
    from PIL import Image

    from fcn_kernels.app.cli import main

    paths = write_images(tmp_path, [(29, 35), (40, 31)])
    out = tmp_path / engine
    assert (
        main(["predict", *map(str, paths), "--checkpoint", str(checkpoint), "--out", str(out), "--engine", engine]) == 0
    )
    for path in paths:
        assert (np.asarray(Image.open(out / f"{path.stem}.png")) == expected_labels(checkpoint, path)).mean() > 0.99
    capsys.readouterr()
    ok = engine == "openvino"
    args = ["predict", str(paths[0]), "--checkpoint", str(checkpoint), "--out", str(out), "--engine", engine]
    assert main([*args, "--dtype", "bfloat16"]) == (0 if ok else 2)
    assert ok or "--engine onnxruntime: engine='onnxruntime' runs float32 only" in capsys.readouterr().err


def test_predict_command_errors(tmp_path, checkpoint, capsys):
    from PIL import Image

    from fcn_kernels.app.cli import main

    (good,) = write_images(tmp_path, [(16, 16)])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    gif = tmp_path / "anim.gif"
    Image.new("RGB", (8, 8)).save(gif)
    bad_ckpt = tmp_path / "bad.pt"
    bad_ckpt.write_bytes(b"garbage")
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(1)}, plain)
    other = tmp_path / "other"
    other.mkdir()
    (dup,) = write_images(other, [(8, 8)])
    cases = [
        ([str(tmp_path / "missing.png")], str(checkpoint), "missing.png"),
        ([str(text)], str(checkpoint), "notes.png"),
        ([str(gif)], str(checkpoint), "GIF"),
        ([str(good)], str(tmp_path / "nowhere.pt"), "nowhere.pt"),
        ([str(good)], str(bad_ckpt), "bad.pt"),
        ([str(good)], str(plain), "plain.pt"),
        ([str(good), str(dup)], str(checkpoint), "img0"),
    ]
    for images, ckpt, needle in cases:
        assert main(["predict", *images, "--checkpoint", ckpt, "--out", str(tmp_path / "o")]) == 2, needle
        err = capsys.readouterr().err.strip()
        assert err.startswith("fcn-kernels predict: error:") and needle in err and "\n" not in err, err
    assert main(["predict", str(good), "--checkpoint", str(checkpoint), "--out", str(tmp_path)]) == 2
    assert "would be overwritten" in capsys.readouterr().err


def test_predict_command_takes_a_folder(tmp_path, checkpoint, capsys):
    """A folder stands for its images (by extension, any case), sorted by name; other files, hidden files
    and subfolders are left out; every format named is read."""
    import numpy as np
    from PIL import Image

    from fcn_kernels.app.cli import main

    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = ["b.jpg", "a.PNG", "c.bmp", "d.tiff", "e.webp", "f.ppm", "g.JPEG", "h.tif"]
    for name in names + [".hidden.png", "sub/inner.png"]:
        Image.fromarray(rng.integers(0, 256, (18, 23, 3), dtype=np.uint8)).save(src / name)
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                str(src),
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(out),
                "--device",
                "cpu",
                "--no-progress",
            ]
        )
        == 0
    )
    assert f"{len(names)} label map(s)" in capsys.readouterr().out
    stems = sorted(n.split(".")[0] for n in names)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}{x}" for s in stems for x in (".png", "_overlay.png"))
    for name in ("c.bmp", "d.tiff", "e.webp"):  # the labels of the image, whatever its format
        assert np.array_equal(np.asarray(Image.open(out / f"{name[0]}.png")), expected_labels(checkpoint, src / name))


def test_predict_command_folder_order(tmp_path):
    """Sorted by name, a folder's images after the files named before it, in the order given."""
    from fcn_kernels.app.commands.predict import _image_paths

    folder = tmp_path / "f"
    folder.mkdir()
    for name in ("z.png", "B.jpg", "a.png", "m.Tif"):
        (folder / name).touch()
    assert [p.name for p in _image_paths([str(tmp_path / "x.png"), str(folder)])] == [
        "x.png",
        "B.jpg",
        "a.png",
        "m.Tif",
        "z.png",
    ]


def test_predict_command_empty_folder(tmp_path, checkpoint, capsys):
    from fcn_kernels.app.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "anim.gif").touch()
    assert main(["predict", str(empty), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fcn-kernels predict: error: folder") and "has no images" in err and ".webp" in err
    assert "\n" not in err


@pytest.fixture
def folder_with_bad_images(tmp_path):
    """Five images: two good, one not an image, one GIF, one whose data is cut short (its header reads)."""
    import io

    import numpy as np
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.png", "c.jpg"):
        Image.fromarray(rng.integers(0, 256, (21, 17, 3), dtype=np.uint8)).save(src / name)
    (src / "b.png").write_bytes(b"not a png")
    Image.new("RGB", (8, 8)).save(src / "d.png", format="GIF")
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    (src / "e.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return src


def test_predict_command_stops_at_a_bad_image_before_any_work(folder_with_bad_images, tmp_path, checkpoint, capsys):
    from fcn_kernels.app.cli import main

    out = tmp_path / "out"
    assert main(["predict", str(folder_with_bad_images), "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "b.png" in err and "--keep-going" in err and "\n" not in err
    assert not out.exists()


def test_predict_command_keep_going(folder_with_bad_images, tmp_path, checkpoint, capsys):
    """--keep-going: one line on stderr for each bad image (whether its header or its data is bad), the others
    written, then a summary and exit status 1."""
    import numpy as np
    from PIL import Image

    from fcn_kernels.app.cli import main

    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                str(folder_with_bad_images),
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(out),
                "--keep-going",
                "--batch-size",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 1
    )
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    skipped = [line for line in lines if line.startswith("fcn-kernels predict: skipped:")]
    assert [next(n for n in ("b.png", "d.png", "e.png") if n in line) for line in skipped] == [
        "b.png",
        "d.png",
        "e.png",
    ]
    assert "GIF" in skipped[1] and "truncated" in skipped[2]
    assert lines[-1].startswith("fcn-kernels predict: error: 3 of 5 image(s)") and "2 written" in lines[-1]
    assert "2 label map(s)" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a_overlay.png", "c.png", "c_overlay.png"]
    assert np.array_equal(
        np.asarray(Image.open(out / "c.png")), expected_labels(checkpoint, folder_with_bad_images / "c.jpg")
    )


def test_predict_command_keep_going_with_nothing_readable(tmp_path, checkpoint, capsys):
    from fcn_kernels.app.cli import main

    (tmp_path / "x.png").write_bytes(b"junk")
    assert (
        main(
            [
                "predict",
                str(tmp_path / "x.png"),
                str(tmp_path / "missing.jpg"),
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(tmp_path / "o"),
                "--keep-going",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "x.png" in err[0] and "missing.jpg" in err[1] and "2 of 2" in err[2]
    assert not (tmp_path / "o").exists()
