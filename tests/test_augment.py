"""Weight-space augmentations on stacked SIRENs: exact symmetries and exact coordinate transforms."""
from __future__ import annotations


import pytest
import torch

from neuralgraph.augment import (Augment, gaussian_noise, inr_affine, permute_hidden_stacked,
                                 random_affine, weight_dropout)
from neuralgraph.data import load_digits
from neuralgraph.inr import fit_sirens, image_grid, render, siren_forward, siren_init


def random_params(B, widths, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    w, b = siren_init(B, widths, 30.0, g, dtype=dtype)
    b = [torch.randn(x.shape, generator=g, dtype=dtype) * 0.1 for x in b]  # non-zero biases
    return w, b


@pytest.fixture(scope="module")
def fitted():
    x, _ = load_digits()
    res = fit_sirens(x[:16], steps=60, progress=False)
    return x[:16], [w.double() for w in res.weights], [b.double() for b in res.biases]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("widths", [(2, 32, 32, 1), (2, 5, 7, 3, 2), (2, 9, 1)])
def test_permutation_keeps_the_function(seed, widths):
    w, b = random_params(6, widths, seed)
    coords = torch.rand(50, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1
    w2, b2, perms = permute_hidden_stacked(w, b, torch.Generator().manual_seed(seed + 100), return_perms=True)
    torch.testing.assert_close(siren_forward(w2, b2, coords), siren_forward(w, b, coords), rtol=0, atol=1e-10)
    assert len(perms) == len(widths) - 2
    for p, d in zip(perms, widths[1:-1]):
        assert torch.equal(p.sort(1).values, torch.arange(d).expand(6, d))
    if widths[1] > 5:  # independent per network, and the weights really moved
        assert len({tuple(r.tolist()) for r in perms[0]}) == 6
        assert not torch.equal(w2[0], w[0])
    # the explicit rule: new neuron i of hidden layer 1 is old neuron p[i]
    k = 2
    torch.testing.assert_close(w2[0][k], w[0][k][perms[0][k]], rtol=0, atol=0)
    torch.testing.assert_close(w2[1][k], w[1][k][:, perms[0][k]] if len(perms) == 1
                               else w[1][k][perms[1][k]][:, perms[0][k]], rtol=0, atol=0)


def test_augmentations_do_not_modify_inputs():
    w, b = random_params(4, (2, 8, 8, 1), 0)
    keep = [t.clone() for t in w + b]
    A, t = random_affine(4, 0.2, 30, 0.2, torch.Generator().manual_seed(0), torch.float64)
    Augment(permute=True, noise_std=0.1, dropout=0.3, translate=0.1, rotate=10, scale=0.1)(w, b)
    inr_affine(w, b, A, t)
    for x, y in zip(w + b, keep):
        assert torch.equal(x, y)


@pytest.mark.parametrize("seed", range(4))
def test_affine_is_a_coordinate_transform(seed):
    w, b = random_params(5, (2, 16, 16, 1), seed)
    g = torch.Generator().manual_seed(seed)
    A, t = random_affine(5, translate=0.3, rotate=45, scale=0.3, generator=g, dtype=torch.float64)
    w2, b2 = inr_affine(w, b, A, t)
    x = torch.rand(5, 40, 2, generator=g, dtype=torch.float64) * 2 - 1
    moved = torch.einsum("bij,bpj->bpi", A, x) + t[:, None, :]
    torch.testing.assert_close(siren_forward(w2, b2, x), siren_forward(w, b, moved), rtol=0, atol=1e-10)
    assert torch.equal(w2[1], w[1]) and torch.equal(b2[1], b[1])
    # A = s R(theta) with |theta| <= 45 deg, s in [0.7, 1.3], |t| <= 0.3
    s = torch.linalg.det(A).sqrt()
    assert bool(((s >= 0.7) & (s <= 1.3)).all()) and bool((t.abs() <= 0.3).all())
    torch.testing.assert_close(A @ A.transpose(1, 2), (s ** 2)[:, None, None] * torch.eye(2, dtype=torch.float64))


def test_rotation_by_90_degrees_rotates_the_fitted_image(fitted):
    """On the symmetric [-1,1] grid a 90 degree rotation maps pixels onto pixels: exact check."""
    x, w, b = fitted
    A = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)  # (r, c) -> (-c, r)
    w2, b2 = inr_affine(w, b, A, torch.zeros(2, dtype=torch.float64))
    img, img2 = render(w, b, 8, 8), render(w2, b2, 8, 8)
    # new[i, j] = old at (-c_j, r_i) = old[7 - j, i]
    torch.testing.assert_close(img2, img.flip(1).transpose(1, 2), rtol=0, atol=1e-9)
    # and it is still the digit (rotated): fitted INRs reconstruct the data
    err = (img2 - x.flip(1).transpose(1, 2)).abs().amax(dim=(1, 2))
    torch.testing.assert_close(err, (img - x).abs().amax(dim=(1, 2)), rtol=0, atol=1e-9)
    assert float(err.max()) < 0.1
    # translation by one pixel pitch (2/7) shifts the image by one pixel
    w3, b3 = inr_affine(w, b, torch.eye(2, dtype=torch.float64), torch.tensor([0.0, 2.0 / 7], dtype=torch.float64))
    torch.testing.assert_close(render(w3, b3, 8, 8)[:, :, :7], img[:, :, 1:], rtol=0, atol=1e-9)


def test_gaussian_noise_statistics():
    w, b = random_params(64, (2, 32, 32, 1), 1, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    w2, b2 = gaussian_noise(w, b, 0.05, g)
    d = torch.cat([(x - y).reshape(-1) for x, y in zip(w2 + b2, w + b)])
    assert abs(float(d.std()) - 0.05) < 0.002 and abs(float(d.mean())) < 0.002
    w3, b3 = gaussian_noise(w, b, 0.05, torch.Generator().manual_seed(0))
    assert all(torch.equal(x, y) for x, y in zip(w2 + b2, w3 + b3))
    w4, b4 = gaussian_noise(w, b, 0.05, g, include_bias=False)
    assert all(torch.equal(x, y) for x, y in zip(b4, b))
    with pytest.raises(ValueError, match="sigma"):
        gaussian_noise(w, b, -1.0)


def test_weight_dropout_statistics():
    w, b = random_params(64, (2, 32, 32, 1), 2, dtype=torch.float32)
    w2, b2 = weight_dropout(w, b, 0.25, torch.Generator().manual_seed(0))
    zeros = torch.cat([(x == 0).reshape(-1) for x in w2]).float().mean()
    assert abs(float(zeros) - 0.25) < 0.01
    for x, y in zip(w2, w):
        kept = x != 0
        assert torch.equal(x[kept], y[kept])
    assert all(torch.equal(x, y) for x, y in zip(b2, b))
    w3, _ = weight_dropout(w, b, 0.5, torch.Generator().manual_seed(0), rescale=True)
    kept = w3[1] != 0
    torch.testing.assert_close(w3[1][kept], 2 * w[1][kept])
    with pytest.raises(ValueError, match="probability"):
        weight_dropout(w, b, 1.0)


def test_augment_config(fitted):
    x, w, b = fitted
    coords = image_grid(8, 8, dtype=torch.float64)
    ref = siren_forward(w, b, coords)
    assert not Augment().active
    w1, b1 = Augment()(w, b)
    assert all(torch.equal(p, q) for p, q in zip(w1 + b1, w + b))
    w2, b2 = Augment(permute=True)(w, b, torch.Generator().manual_seed(1))
    torch.testing.assert_close(siren_forward(w2, b2, coords), ref, rtol=0, atol=1e-10)
    aug = Augment(permute=True, noise_std=1e-4, dropout=0.01, translate=0.05, rotate=5, scale=0.05)
    r1 = aug(w, b, torch.Generator().manual_seed(3))
    r2 = aug(w, b, torch.Generator().manual_seed(3))
    assert all(torch.equal(p, q) for p, q in zip(r1[0] + r1[1], r2[0] + r2[1]))
    out = siren_forward(*r1, coords)
    assert 0 < float((out - ref).abs().mean()) < 0.5   # a nearby, different image
    with pytest.raises(ValueError):
        Augment(dropout=1.5)
    with pytest.raises(ValueError, match="2-D input"):
        Augment(rotate=10)(*random_params(2, (3, 4, 1), 0))
    with pytest.raises(ValueError, match="layer 2"):
        permute_hidden_stacked([torch.zeros(2, 4, 2), torch.zeros(2, 1, 5)], [torch.zeros(2, 4), torch.zeros(2, 1)])


@pytest.mark.parametrize("kwargs, key", [
    ({"permute": "false"}, "permute"),             # a truthy string used to turn permutation on
    ({"permute": 1}, "permute"),
    ({"noise_std": float("inf")}, "noise_std"),
    ({"translate": float("nan")}, "translate"),
    ({"rotate": "5"}, "rotate"),
    ({"dropout": True}, "dropout"),
])
def test_augment_refuses_values_of_the_wrong_type(kwargs, key):
    with pytest.raises(ValueError, match=f"{key}="):
        Augment(**kwargs)
