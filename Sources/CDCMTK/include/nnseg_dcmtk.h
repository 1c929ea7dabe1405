/*
 * nnseg_dcmtk.h — the one C boundary between nnseg and DCMTK (plus OpenJPEG for JPEG 2000).
 *
 * Overview
 *   Swift never sees a C++ type: every DCMTK call goes through this file's functions, which return a
 *   status and, on failure, a human-readable message (never patient data: messages name tags, transfer
 *   syntaxes and DCMTK conditions only).
 *
 *   nnseg_dcm_initialize();                       // once per process: registers RLE, JPEG, JPEG-LS decoders
 *   nnseg_dcm_file *f = NULL;
 *   char msg[512];
 *   if (nnseg_dcm_open("/data/CT.1", &f, msg, sizeof msg) == NNSEG_DCM_OK) {
 *       char v[256];
 *       nnseg_dcm_get_string(f, "0020,0032", v, sizeof v);                        // "-249.5\\-437.5\\-804.5"
 *       nnseg_dcm_get_string(f, "5200,9230[0]/0020,9113[0]/0020,0032", v, sizeof v); // nested path
 *       uint8_t *px; size_t n;
 *       nnseg_dcm_decode_pixels(f, &px, &n, msg, sizeof msg);                     // all frames, see below
 *       nnseg_dcm_free(px);
 *       nnseg_dcm_close(f);
 *   }
 *
 * Attribute paths
 *   "gggg,eeee" addresses an element of the dataset (group 0002 is looked up in the file meta header).
 *   Sequence items are addressed as "gggg,eeee[n]" (n from 0) and joined with '/'.
 *
 * Pixel layout returned by nnseg_dcm_decode_pixels
 *   The stored values of all frames, frame after frame, rows top to bottom, columns left to right, samples
 *   interleaved, each value BitsAllocated wide in little-endian order (BitsAllocated 1: bits packed LSB
 *   first across the whole pixel data, as the standard stores them). Values are as decoded: no masking to
 *   BitsStored and no sign extension — the caller does that with the header values.
 */
#ifndef NNSEG_DCMTK_H
#define NNSEG_DCMTK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    NNSEG_DCM_OK = 0,
    /// Neither a DICOM Part 10 file (preamble + "DICM") nor a recognisable raw dataset.
    NNSEG_DCM_NOT_DICOM = 1,
    /// DCMTK could not parse the file (truncated, corrupt, unreadable).
    NNSEG_DCM_READ_FAILED = 2,
    /// The object has no Pixel Data (0x7FE0,0010).
    NNSEG_DCM_NO_PIXEL_DATA = 3,
    /// The transfer syntax has no decoder in this build (the message names it).
    NNSEG_DCM_UNSUPPORTED_TRANSFER_SYNTAX = 4,
    /// A decoder was found but failed (corrupt or truncated codestream).
    NNSEG_DCM_DECODE_FAILED = 5,
    NNSEG_DCM_BAD_ARGUMENT = 6,
    /// The file ends before the data its header declares (cut short, or a corrupt element length).
    NNSEG_DCM_TRUNCATED = 7,
} nnseg_dcm_status;

typedef struct nnseg_dcm_file nnseg_dcm_file;

/// Registers DCMTK's RLE, JPEG and JPEG-LS decoders and quiets DCMTK's own logger. Idempotent and
/// thread-safe; the codecs stay registered for the life of the process.
void nnseg_dcm_initialize(void);

/// Opens a file and parses its header. Large element values (Pixel Data) stay on disk until needed.
nnseg_dcm_status nnseg_dcm_open(const char *path, nnseg_dcm_file **out, char *message, size_t message_capacity);

void nnseg_dcm_close(nnseg_dcm_file *file);

/// 1 when the file had a Part 10 preamble and file meta header, 0 for a raw dataset.
int nnseg_dcm_has_meta_header(const nnseg_dcm_file *file);

/// Transfer syntax UID the dataset was read with (from the meta header, or detected for raw datasets).
/// Returns the length written (without NUL).
long nnseg_dcm_transfer_syntax_uid(const nnseg_dcm_file *file, char *buffer, size_t capacity);

/// The value at `path` in DCMTK's normalised string form (numbers as text, multiple values joined by
/// '\\'). Returns the full length of the value (it may exceed capacity; the copy is then truncated and
/// NUL-terminated), 0 for an empty value, or -1 when the attribute is absent or the path is malformed.
long nnseg_dcm_get_string(const nnseg_dcm_file *file, const char *path, char *buffer, size_t capacity);

/// 1 when an attribute exists at `path` (any VR, even empty), else 0. Does not load its value.
int nnseg_dcm_has(const nnseg_dcm_file *file, const char *path);

/// Length in bytes of the top-level Pixel Data value: -1 when absent, -2 when encapsulated (undefined
/// length). Reads the element header only.
long nnseg_dcm_pixel_data_length(const nnseg_dcm_file *file);

/// Number of items of the sequence at `path`, or -1 when absent or not a sequence.
long nnseg_dcm_item_count(const nnseg_dcm_file *file, const char *path);

/// Decodes the Pixel Data of every frame (layout in the header comment). On success *out_bytes is a
/// malloc'ed buffer the caller releases with nnseg_dcm_free.
nnseg_dcm_status nnseg_dcm_decode_pixels(nnseg_dcm_file *file, uint8_t **out_bytes, size_t *out_length,
                                         char *message, size_t message_capacity);

void nnseg_dcm_free(void *pointer);

/* ---- Writing: a dataset builder (SEG and RTSTRUCT are composed in Swift, written by DCMTK) ---- */

typedef struct nnseg_dcm_builder nnseg_dcm_builder;

/// A new, empty dataset.
nnseg_dcm_builder *nnseg_dcm_builder_create(void);
void nnseg_dcm_builder_destroy(nnseg_dcm_builder *builder);

/// Sets the value at `path` (same syntax as nnseg_dcm_get_string; items are created as needed, "[n]"
/// with n = current item count appends one). The value is DICOM's string form ('\' between values);
/// numeric VRs are parsed. An empty value writes an empty (Type 2) element. Returns 0 or an error
/// message in `message`.
int nnseg_dcm_builder_put(nnseg_dcm_builder *builder, const char *path, const char *value, char *message, size_t message_capacity);

/// Ensures a (possibly empty) sequence exists at `path`.
int nnseg_dcm_builder_put_sequence(nnseg_dcm_builder *builder, const char *path, char *message, size_t message_capacity);

/// Sets Pixel Data (7FE0,0010): VR OB when bits_allocated <= 8 (1-bit data is packed by the caller),
/// else OW from little-endian bytes.
int nnseg_dcm_builder_put_pixel_data(nnseg_dcm_builder *builder, const uint8_t *bytes, size_t length, int bits_allocated,
                                     char *message, size_t message_capacity);

/// Copies the listed top-level attributes (tags as "gggg,eeee"), when present, from an opened file.
int nnseg_dcm_builder_copy(nnseg_dcm_builder *builder, const nnseg_dcm_file *source, const char *const *tags, size_t count);

/// Writes a Part 10 file: transfer syntax "explicit" (Explicit VR Little Endian) or "implicit".
/// The file is written to a temporary name beside `path` and renamed, so no partial file is ever left.
int nnseg_dcm_builder_save(nnseg_dcm_builder *builder, const char *path, const char *transfer_syntax,
                           char *message, size_t message_capacity);

/// A new DICOM UID under DCMTK's root (site roots can be configured later).
long nnseg_dcm_new_uid(char *buffer, size_t capacity);

/// DCMTK's version string, e.g. "3.6.7".
const char *nnseg_dcm_dcmtk_version(void);

#ifdef __cplusplus
}
#endif

#endif
