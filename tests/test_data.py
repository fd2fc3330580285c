"""Synthetic data set, VOC-format loader (on a tiny tree written here), preprocessing."""

import numpy as np
import pytest
import torch
from PIL import Image

from _helpers.voc_tree import write_voc
from fcn_kernels.data import (
    BGR_MEAN,
    DataError,
    SyntheticShapes,
    VOCSegmentation,
    preprocess,
    save_overlay,
    transforms,
    write_voc_label,
)


def test_synthetic_is_seeded_and_labelled():
    a = SyntheticShapes(6, size=32, n_class=5, seed=1)
    b = SyntheticShapes(6, size=32, n_class=5, seed=1)
    c = SyntheticShapes(6, size=32, n_class=5, seed=2)
    v = SyntheticShapes(6, size=32, n_class=5, seed=1, split="val")
    x, y = a[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert y.shape == (32, 32) and y.dtype == torch.int64
    assert torch.equal(x, b[3][0]) and torch.equal(y, b[3][1])
    assert not torch.equal(x, c[3][0]) and not torch.equal(x, v[3][0])
    labels = torch.stack([a[i][1] for i in range(6)])
    assert int(labels.min()) >= 0 and int(labels.max()) < 5
    assert (labels == 0).any() and (labels > 0).any()
    img, lab = a.raw(3)
    assert img.dtype == np.uint8 and img.shape == (32, 32, 3) and np.array_equal(lab, y.numpy())
    # every shape class shows up over a modest number of images
    many = SyntheticShapes(40, size=32, n_class=4, seed=0)
    assert set(torch.cat([many[i][1].unique() for i in range(40)]).tolist()) == {0, 1, 2, 3}


def test_synthetic_flip_and_errors():
    ds = SyntheticShapes(8, size=24, n_class=3, flip=True)
    flipped = sum(not torch.equal(ds[i][1], torch.from_numpy(ds.raw(i)[1])) for i in range(8))
    assert 0 < flipped < 8
    with pytest.raises(ValueError, match="n_class"):
        SyntheticShapes(4, n_class=9)
    with pytest.raises(ValueError, match="split"):
        SyntheticShapes(4, split="bogus")
    with pytest.raises(IndexError):
        ds.raw(8)


def test_bgr_mean_preprocessing_is_the_references():
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    x = preprocess(img, "bgr_mean")
    want = img[:, :, ::-1].astype(np.float32) - np.array(BGR_MEAN, np.float32)  # Caffe: BGR, mean subtracted
    np.testing.assert_allclose(x.numpy().transpose(1, 2, 0), want, rtol=0, atol=1e-4)
    for mode in ("bgr_mean", "rgb_unit", "rgb_norm", "none"):
        assert np.array_equal(transforms.deprocess(preprocess(img, mode), mode), img)
    with pytest.raises(ValueError):
        preprocess(img, "bogus")


def test_voc_loader(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    ids = write_voc(root)
    for given in (root, tmp_path, tmp_path / "VOCdevkit"):  # the devkit folders above are accepted too
        ds = VOCSegmentation(given, "train")
        assert len(ds) == 3 and ds.ids == ids["train"]
    x, y = ds[1]
    assert x.shape == (3, 21, 27) and y.shape == (21, 27)
    lab = np.asarray(Image.open(root / "SegmentationClass" / f"{ids['train'][1]}.png"))
    assert Image.open(root / "SegmentationClass" / f"{ids['train'][1]}.png").mode == "P"
    assert np.array_equal(y.numpy(), lab)  # palette indices are the classes, 255 kept
    img = np.asarray(Image.open(root / "JPEGImages" / f"{ids['train'][1]}.jpg").convert("RGB"))
    np.testing.assert_allclose(x.numpy(), preprocess(img, "bgr_mean").numpy())
    assert len(VOCSegmentation(root, "val")) == 2
    xb, yb = transforms.pad_collate([ds[0], ds[1], ds[2]])
    assert xb.shape == (3, 3, 22, 28) and yb.shape == (3, 22, 28)
    assert (yb[0, 20:] == 255).all() and (xb[0, :, 20:] == 0).all()  # padding: mean image, void label


def test_voc_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        VOCSegmentation(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a VOC-format directory: missing JPEGImages/"):
        VOCSegmentation(tmp_path / "empty")
    root = tmp_path / "voc"
    ids = write_voc(root, bad=30)
    with pytest.raises(DataError, match=r"no split list .*trainval.txt.*splits found: \['train', 'val'\]"):
        VOCSegmentation(root, "trainval")
    ds = VOCSegmentation(root, "train")
    ds[0]
    with pytest.raises(DataError, match=r"labels \[30\] are outside \[0, 21\)"):
        ds[1]
    (root / "JPEGImages" / f"{ids['val'][0]}.jpg").unlink()
    with pytest.raises(DataError, match="lack JPEGImages"):
        VOCSegmentation(root, "val")
    # an RGB-coloured label instead of class indices
    Image.open(root / "SegmentationClass" / f"{ids['train'][0]}.png").convert("RGB").save(
        root / "SegmentationClass" / f"{ids['train'][0]}.png"
    )
    with pytest.raises(DataError, match="mode 'RGB'"):
        ds[0]
    (root / "ImageSets" / "Segmentation" / "empty.txt").write_text("\n")
    with pytest.raises(DataError, match="is empty"):
        VOCSegmentation(root, "empty")


def test_overlay(tmp_path):
    img = np.full((8, 10, 3), 100, np.uint8)
    lab = np.zeros((8, 10), np.int64)
    lab[2:5, 2:5] = 1
    lab[0] = 255
    row = transforms.overlay_panel(img, lab, np.zeros_like(lab))
    assert len(row) == 3 and all(p.shape == (8, 10, 3) and p.dtype == np.uint8 for p in row)
    assert np.array_equal(row[0], img)  # the image
    assert not np.array_equal(row[1][3, 3], img[3, 3])  # ground truth class 1 tinted
    assert np.array_equal(row[2], img)  # predicted background left as is
    assert np.array_equal(transforms.tint(img, lab)[3, 3], row[1][3, 3])
    assert tuple(transforms.colorize(np.array([[1, 255]]))[0, 0]) == (128, 0, 0)
    plain = Image.open(save_overlay(tmp_path / "o.png", [row, row], scale=2))
    assert plain.size == (2 * 3 * 10 + 2 * 4, 2 * 2 * 8 + 4)
    assert np.array_equal(np.asarray(plain)[:16:2, :20:2], img)  # panels scaled, no title band


def test_overlay_titles_and_legend(tmp_path):
    img = np.full((16, 16, 3), 90, np.uint8)
    rows = [[img, img], [img, img]]
    names = ["background", "disk", "square"]
    plain = Image.open(save_overlay(tmp_path / "plain.png", rows, scale=1))
    pic = Image.open(save_overlay(tmp_path / "o.png", rows, scale=1, titles=("image", "prediction"), class_names=names))
    assert pic.width == plain.width and pic.height > plain.height + 20  # a title band and a legend band
    a = np.asarray(pic)
    body = plain.height
    title_h = next(y for y in range(a.shape[0]) if (a[y, :16] == 90).all())
    assert title_h > 5 and (a[:title_h] < 128).any()  # dark title text above the panels
    assert np.array_equal(a[title_h : title_h + body], np.asarray(plain))
    legend = a[title_h + body :]
    from fcn_kernels.data import voc_colormap

    cmap = voc_colormap()
    for k in (1, 2):  # a swatch of each shape class's colour
        assert (legend == cmap[k]).all(-1).sum() > 20, names[k]
    with pytest.raises(ValueError, match="2 titles for 3 columns"):
        save_overlay(tmp_path / "x.png", [[img, img, img]], titles=("a", "b"))
    assert not (tmp_path / "x.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png", "plain.png"]  # no temp files left


def test_data_faults_name_the_file(tmp_path):
    root = tmp_path / "voc"
    ids = write_voc(root, n_train=4)
    jpg = [root / "JPEGImages" / f"{i}.jpg" for i in ids["train"]]
    png = [root / "SegmentationClass" / f"{i}.png" for i in ids["train"]]
    jpg[0].write_bytes(jpg[0].read_bytes()[:200])  # a truncated JPEG
    jpg[1].write_text("not an image")  # a text file named .jpg
    write_voc_label(png[2], np.zeros((5, 5), np.uint8))  # a label of the wrong size
    png[3].write_bytes(png[3].read_bytes()[:60])  # a truncated PNG
    ds = VOCSegmentation(root, "train")
    for k, (path, words) in enumerate(
        (
            (jpg[0], "cannot read the image"),
            (jpg[1], "cannot read the image"),
            (png[2], "the label is 5x5 but its image"),
            (png[3], "cannot read the label"),
        )
    ):
        with pytest.raises(DataError) as e:
            ds[k]
        assert str(path) in str(e.value) and words in str(e.value), str(e.value)
        assert "\n" not in str(e.value)
    Image.open(png[1]).convert("RGB").save(png[1])  # a label of the wrong mode
    jpg[1].write_bytes(jpg[2].read_bytes())
    with pytest.raises(DataError, match=f"{png[1]}: label image has mode 'RGB'"):
        ds[1]
    (root / "ImageSets" / "Segmentation" / "more.txt").write_text("\n".join(ids["train"] + ["2009_000404"]))
    with pytest.raises(DataError, match=r"more.txt: 2 image or label file.*2009_000404.jpg' does not exist"):
        VOCSegmentation(root, "more")
