"""Synthetic DICOM instances made from one of pydicom's sample files (distinct UIDs, real pixel data)."""

import io

from .servers import require


def make_instances(count: int, studies: int = 1, series_per_study: int = 1, template: str = "CT_small.dcm",
                   seed: str = "1.2.826.0.1.3680043.8.498.77") -> list[bytes]:
    """``count`` DICOM files spread over ``studies`` studies of ``series_per_study`` series each."""
    try:
        import pydicom
        from pydicom.data import get_testdata_file
    except ImportError:
        require(False, "pydicom is not installed")
    path = get_testdata_file(template, download=False)
    require(path is not None, f"pydicom's sample {template} is missing")
    base = pydicom.dcmread(path)
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
