"""Synthetic DICOM instances made from one of pydicom's sample files (distinct UIDs, real pixel data)."""

import io
import os

from .servers import require


def _sample(name: str):
    """pydicom's sample file ``name``, read as a dataset (skips, or fails in CI, without pydicom or the file)."""
    try:
        import pydicom
        from pydicom.data import get_testdata_file
    except ImportError:
        require(False, "pydicom is not installed")
    path = get_testdata_file(name, download=False)
    require(path is not None, f"pydicom's sample {name} is missing")
    return pydicom.dcmread(path)


def make_instances(count: int, studies: int = 1, series_per_study: int = 1, template: str = "CT_small.dcm",
                   seed: str = "1.2.826.0.1.3680043.8.498.77") -> list[bytes]:
    """``count`` DICOM files spread over ``studies`` studies of ``series_per_study`` series each."""
    base = _sample(template)
    files = []
    for number in range(count):
        study = number % studies
        series = (number // studies) % series_per_study
        dataset = base.copy()
        dataset.PatientID = f"OBJSTORE-{seed[-2:]}-{study}"
        dataset.PatientName = f"Move^Test{study}"
        dataset.StudyInstanceUID = f"{seed}.{study + 1}"
        dataset.SeriesInstanceUID = f"{seed}.{study + 1}.{series + 1}"
        dataset.SOPInstanceUID = f"{seed}.{study + 1}.{series + 1}.{number + 1}"
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.InstanceNumber = number + 1
        buffer = io.BytesIO()
        dataset.save_as(buffer)
        files.append(buffer.getvalue())
    return files


def large_instance(size: int, uid_suffix: str = "") -> bytes:
    """A valid multi-frame instance of about ``size`` bytes (CT_small's header, random 16-bit 512x512
    frames, so nothing compresses); its SOP instance UID ends in ``size`` and ``uid_suffix``."""
    dataset = _sample("CT_small.dcm")
    rows = columns = 512
    frame = rows * columns * 2
    frames = max(1, round(size / frame))
    dataset.Rows, dataset.Columns, dataset.NumberOfFrames = rows, columns, frames
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 16, 15
    dataset.PixelData = os.urandom(frame * frames)
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = \
        f"1.2.826.0.1.3680043.8.498.91.{size}{uid_suffix}"
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()
