#!/usr/bin/env python3
"""Independent check of a DICOM SEG with highdicom (validation only, never used by nnseg itself).

    python seg_highdicom.py <seg.dcm> <source dir> <expected labels .npy (z,y,x) uint8> <label1,label2,...>

Reads the SEG with highdicom, maps it onto the source instances (sorted by nnseg's order, given by the
expected array's slice order = ascending position along the normal), and prints JSON with per-segment
equality. Exit code 0 when every segment equals the expected mask exactly.
"""
import json
import os
import sys

import highdicom as hd
import numpy as np
import pydicom


def main(seg_path, source_dir, expected_path, labels):
    seg = hd.seg.segread(seg_path)
    sources = []
    for name in sorted(os.listdir(source_dir)):
        try:
            ds = pydicom.dcmread(os.path.join(source_dir, name), stop_before_pixels=True)
            if not ds.get("SOPInstanceUID"):
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        except Exception:
            continue
        if "ImagePositionPatient" in ds:
            sources.append(ds)
    normal = np.cross(np.array(sources[0].ImageOrientationPatient[:3], float), np.array(sources[0].ImageOrientationPatient[3:], float))
    sources.sort(key=lambda d: float(np.dot(normal, np.array(d.ImagePositionPatient, float))))
    # Anonymised sources may carry their UID only in the file meta (nnseg's --repair-missing-uids).
    uids = [d.get("SOPInstanceUID") or d.file_meta.MediaStorageSOPInstanceUID for d in sources]
    masks = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, ignore_spatial_locations=False)
    expected = np.load(expected_path)
    result = {"segments": seg.get_segment_numbers(), "equal": {}}
    ok = True
    for i, label in enumerate(labels):
        ours = masks[..., i].astype(bool)
        want = expected == label
        equal = bool(np.array_equal(ours, want))
        result["equal"][str(label)] = equal
        ok &= equal
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], [int(v) for v in sys.argv[4].split(",")]))
