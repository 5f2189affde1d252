"""HLS bandpass adjustment: the published MSI-to-OLI fits, inverted to bring OLI to MSI."""

import pytest

from cube_assets.raster.bandpass import HLS_MSI_TO_OLI, adjusted_scale_and_offset, oli_to_msi


def test_the_table_holds_the_hls_v2_sentinel_2a_coefficients():
    assert HLS_MSI_TO_OLI == {
        "blue": (0.9778, -0.004),
        "green": (1.0053, -0.0009),
        "red": (0.9765, 0.0009),
        "nir": (0.9983, -0.0001),
        "swir16": (0.9987, -0.0011),
        "swir22": (1.003, -0.0012),
    }


@pytest.mark.parametrize(
    ("role", "slope", "offset"),
    [
        ("blue", 1.0227040294, 0.0040908161),
        ("red", 1.0240655402, -0.0009216590),
        ("swir22", 0.9970089731, 0.0011964108),
    ],
)
def test_oli_to_msi_inverts_the_fit(role, slope, offset):
    got_slope, got_offset = oli_to_msi(role)
    assert got_slope == pytest.approx(slope, abs=1e-9)
    assert got_offset == pytest.approx(offset, abs=1e-9)


@pytest.mark.parametrize("role", sorted(HLS_MSI_TO_OLI))
def test_an_adjusted_oli_value_maps_back_to_itself_through_the_published_fit(role):
    a, b = HLS_MSI_TO_OLI[role]
    slope, offset = oli_to_msi(role)
    for oli in (0.0, 0.05, 0.3, 0.9):
        assert a * (slope * oli + offset) + b == pytest.approx(oli, abs=1e-12)


def test_the_adjustment_folds_into_a_landsat_scale_and_offset():
    scale, offset = adjusted_scale_and_offset(2.75e-5, -0.2, "red")
    assert scale == pytest.approx(2.75e-5 / 0.9765, rel=1e-12)
    assert offset == pytest.approx((-0.2 - 0.0009) / 0.9765, rel=1e-12)
    dn = 20000
    assert dn * scale + offset == pytest.approx((dn * 2.75e-5 - 0.2 - 0.0009) / 0.9765, abs=1e-12)


def test_an_unknown_role_is_named():
    with pytest.raises(KeyError, match=r"no HLS adjustment for band role 'rededge'.*'blue'"):
        oli_to_msi("rededge")
