"""The CT benchmark dataset (Ops/bench/ct_fullres.sh, Ops/bench/loader.sh): TotalSegmentator's example CT
(122×101×112 at 3 mm) upsampled ×2 to 1.5 mm and its mirror as two training cases — so that planning targets
1.5 mm — and the CT itself at 3 mm as imagesTs/ct_100. Labels: 5 HU bands × 5 slabs along z inside the body
(26 classes with background).

usage: python make_ct_dataset.py OUT_FOLDER [CROP]   (CROP > 0: a CROP³ corner of the CT, for smoke runs)
"""
import gzip, json, os, struct, sys
import numpy as np
out, crop = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0
def read_nifti(path):
    raw = gzip.open(path).read()
    dim = struct.unpack_from("<8h", raw, 40); datatype = struct.unpack_from("<h", raw, 70)[0]
    pixdim = struct.unpack_from("<8f", raw, 76); offset = int(struct.unpack_from("<f", raw, 108)[0])
    srow = [struct.unpack_from("<4f", raw, 280 + 16 * i) for i in range(3)]
    dtype = {4: np.int16, 8: np.int32, 16: np.float32, 512: np.uint16, 2: np.uint8}[datatype]
    n = dim[1] * dim[2] * dim[3]
    a = np.frombuffer(raw, dtype=dtype, count=n, offset=offset).reshape(dim[3], dim[2], dim[1])  # z, y, x
    return a, pixdim[1:4], srow
def write_nifti(path, a, spacing, srow, dtype):
    a = np.ascontiguousarray(a.astype(dtype)); z, y, x = a.shape
    code, bitpix = {np.int16: (4, 16), np.uint8: (2, 8)}[dtype]
    h = bytearray(352)
    struct.pack_into("<i", h, 0, 348); struct.pack_into("<8h", h, 40, 3, x, y, z, 1, 1, 1, 1)
    struct.pack_into("<hh", h, 70, code, bitpix); struct.pack_into("<8f", h, 76, 1, *spacing, 0, 0, 0, 0)
    struct.pack_into("<f", h, 108, 352); struct.pack_into("<ff", h, 112, 1, 0); struct.pack_into("<B", h, 123, 10)
    struct.pack_into("<hh", h, 252, 0, 1)  # qform 0, sform 1 (scanner)
    for i in range(3): struct.pack_into("<4f", h, 280 + 16 * i, *srow[i])
    h[344:348] = b"n+1\0"
    with gzip.open(path, "wb", compresslevel=1) as f: f.write(bytes(h) + a.tobytes())
ct, spacing, srow = read_nifti("../shared/data/totalseg-example/example_ct.nii.gz")
if crop: ct = ct[:crop, :crop, :crop]
ct = np.clip(ct, -1024, 3071).astype(np.int16)
def labels(img):
    body = img > -500
    band = np.digitize(img, [-100, 30, 150, 400])            # 0…4
    slab = np.minimum(np.arange(img.shape[0]) * 5 // img.shape[0], 4)[:, None, None]
    return np.where(body, 1 + band * 5 + slab, 0).astype(np.uint8)
for sub in ("imagesTr", "labelsTr", "imagesTs"): os.makedirs(os.path.join(out, sub), exist_ok=True)
fine = ct.repeat(2, 0).repeat(2, 1).repeat(2, 2)
half = [s / 2 for s in spacing]
srow_fine = [(r[0] / 2, r[1] / 2, r[2] / 2, r[3]) for r in srow]
for i, img in enumerate([fine, fine[:, :, ::-1]]):
    write_nifti(f"{out}/imagesTr/ct_{i:03d}_0000.nii.gz", img, half, srow_fine, np.int16)
    write_nifti(f"{out}/labelsTr/ct_{i:03d}.nii.gz", labels(img), half, srow_fine, np.uint8)
write_nifti(f"{out}/imagesTs/ct_100_0000.nii.gz", ct, spacing, srow, np.int16)
names = {"background": 0}
for b, band in enumerate(["air", "fat", "soft", "dense", "bone"]):
    for s in range(5): names[f"{band}_{s}"] = 1 + b * 5 + s
json.dump({"channel_names": {"0": "CT"}, "labels": names, "numTraining": 2, "file_ending": ".nii.gz"},
          open(f"{out}/dataset.json", "w"), indent=1)
print(f"dataset: training {fine.shape} at {half} mm ×2, test {ct.shape} at {tuple(spacing)} mm, {len(names)} classes")
