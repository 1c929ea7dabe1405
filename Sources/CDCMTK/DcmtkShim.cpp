// DcmtkShim.cpp — implementation of nnseg_dcmtk.h on top of DCMTK 3.6.7.
//
// Every DCMTK call of nnseg goes through this file (STYLE.md §3, one choke point per C boundary).
// Messages carry tags, transfer syntaxes and DCMTK conditions, never attribute values.

#include "nnseg_dcmtk.h"
#include "J2KDecoder.hpp"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dccodec.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <string>
#include <vector>

struct nnseg_dcm_builder {
    DcmFileFormat format;
    /// The item reached at each depth of the last path written ("3006,0039[2]/3006,0040[17]" …), so that
    /// consecutive writes into one item, and appending item n+1 after item n, cost O(1) instead of walking
    /// DCMTK's item lists (an RTSTRUCT with 10^5 contours made writing quadratic).
    std::vector<std::pair<std::string, DcmItem *>> lastItems;
};

struct nnseg_dcm_file {
    DcmFileFormat format;
    bool hasMeta = false;
    std::string path;
    /// The items of every sequence a path has gone through, in order: DCMTK reaches item n by walking its list
    /// from the start, so reading an RTSTRUCT contour by contour was quadratic (10^5 contours: minutes).
    std::mutex itemsLock;
    std::unordered_map<const DcmSequenceOfItems *, std::vector<DcmItem *>> items;
};

namespace {

void writeMessage(char *message, size_t capacity, const std::string &text) {
    if (message == nullptr || capacity == 0) return;
    size_t n = text.size() < capacity - 1 ? text.size() : capacity - 1;
    std::memcpy(message, text.data(), n);
    message[n] = '\0';
}

long copyOut(const std::string &value, char *buffer, size_t capacity) {
    if (buffer != nullptr && capacity > 0) {
        size_t n = value.size() < capacity - 1 ? value.size() : capacity - 1;
        std::memcpy(buffer, value.data(), n);
        buffer[n] = '\0';
    }
    return static_cast<long>(value.size());
}

// One step of an attribute path: a tag and, for sequences, an item index (-1 when absent).
struct PathStep {
    DcmTagKey tag;
    long item = -1;
};

// Up to four hex digits at p (at least one); advances p.
bool parseHex4(const char *&p, unsigned int &value) {
    value = 0;
    int digits = 0;
    for (; digits < 4; ++digits, ++p) {
        char c = *p;
        unsigned int d;
        if (c >= '0' && c <= '9') d = static_cast<unsigned int>(c - '0');
        else if (c >= 'a' && c <= 'f') d = static_cast<unsigned int>(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = static_cast<unsigned int>(c - 'A' + 10);
        else break;
        value = value * 16 + d;
    }
    return digits > 0;
}

// "gggg,eeee[n]/gggg,eeee…": parsed by hand (sscanf here was 4 % of reading a large RTSTRUCT back, one call per
// step of every attribute access). Anything else after a step is refused.
bool parsePath(const char *path, std::vector<PathStep> &steps) {
    if (path == nullptr) return false;
    const char *p = path;
    while (true) {
        unsigned int g = 0, e = 0;
        if (!parseHex4(p, g) || *p != ',') return false;
        ++p;
        if (!parseHex4(p, e)) return false;
        long item = -1;
        if (*p == '[') {
            ++p;
            if (*p < '0' || *p > '9') return false;
            item = 0;
            while (*p >= '0' && *p <= '9') {
                if (item > 100000000L) return false;
                item = item * 10 + (*p - '0');
                ++p;
            }
            if (*p != ']') return false;
            ++p;
        }
        steps.push_back({DcmTagKey(static_cast<Uint16>(g), static_cast<Uint16>(e)), item});
        if (*p == '\0') break;
        if (*p != '/') return false;
        ++p;
    }
    return !steps.empty();
}

// Walks all but the last step (each of which must name an item) and returns the item holding the last.
DcmItem *resolveParent(const nnseg_dcm_file *file, const std::vector<PathStep> &steps) {
    auto *f = const_cast<nnseg_dcm_file *>(file);
    DcmItem *item = (steps.front().tag.getGroup() == 0x0002 && steps.size() == 1)
                        ? static_cast<DcmItem *>(f->format.getMetaInfo())
                        : static_cast<DcmItem *>(f->format.getDataset());
    for (size_t i = 0; i + 1 < steps.size(); ++i) {
        if (steps[i].item < 0) return nullptr;
        DcmSequenceOfItems *sequence = nullptr;
        if (item->findAndGetSequence(steps[i].tag, sequence).bad() || sequence == nullptr) return nullptr;
        std::lock_guard<std::mutex> guard(f->itemsLock);
        auto found = f->items.find(sequence);
        if (found == f->items.end()) {
            // One walk through the list (each step O(1) from the previous item), kept for every later path.
            std::vector<DcmItem *> list;
            list.reserve(sequence->card());
            for (DcmObject *o = sequence->nextInContainer(nullptr); o != nullptr; o = sequence->nextInContainer(o)) {
                list.push_back(static_cast<DcmItem *>(o));
            }
            found = f->items.emplace(sequence, std::move(list)).first;
        }
        if (static_cast<size_t>(steps[i].item) >= found->second.size()) return nullptr;
        item = found->second[static_cast<size_t>(steps[i].item)];
    }
    return item;
}

Uint16 uint16Attribute(DcmDataset *ds, const DcmTagKey &tag, Uint16 fallback) {
    Uint16 v = 0;
    return ds->findAndGetUint16(tag, v).good() ? v : fallback;
}

long framesOf(DcmDataset *ds) {
    Sint32 frames = 1;
    if (ds->findAndGetSint32(DCM_NumberOfFrames, frames).bad() || frames < 1) frames = 1;
    return frames;
}

std::string xferDescription(E_TransferSyntax xfer) {
    DcmXfer x(xfer);
    return std::string(x.getXferName()) + " (" + x.getXferID() + ")";
}

bool isJPEG2000(E_TransferSyntax xfer) {
    return xfer == EXS_JPEG2000LosslessOnly || xfer == EXS_JPEG2000 ||
           xfer == EXS_JPEG2000MulticomponentLosslessOnly || xfer == EXS_JPEG2000Multicomponent;
}

// Fragments of an encapsulated Pixel Data element grouped per frame (Basic Offset Table when present,
// one fragment per frame when the counts match, else split at JPEG 2000 codestream starts).
bool fragmentsPerFrame(DcmPixelSequence *seq, long frames, std::vector<std::vector<uint8_t>> &out,
                       std::string &error) {
    unsigned long count = seq->card();
    if (count < 2) {
        error = "encapsulated Pixel Data has no fragments";
        return false;
    }
    std::vector<std::pair<Uint8 *, Uint32>> fragments;
    for (unsigned long i = 1; i < count; ++i) {
        DcmPixelItem *item = nullptr;
        if (seq->getItem(item, i).bad() || item == nullptr) {
            error = "cannot read fragment " + std::to_string(i);
            return false;
        }
        Uint8 *data = nullptr;
        Uint32 len = item->getLength();
        if (len > 0 && (item->getUint8Array(data).bad() || data == nullptr)) {
            error = "cannot load fragment " + std::to_string(i) + " (file truncated?)";
            return false;
        }
        fragments.emplace_back(data, len);
    }
    out.assign(static_cast<size_t>(frames), {});
    auto append = [&](size_t frame, size_t fragment) {
        auto &dst = out[frame];
        dst.insert(dst.end(), fragments[fragment].first, fragments[fragment].first + fragments[fragment].second);
    };

    DcmPixelItem *bot = nullptr;
    Uint32 botLength = (seq->getItem(bot, 0).good() && bot != nullptr) ? bot->getLength() : 0;
    if (botLength == static_cast<Uint32>(4 * frames) && frames > 1) {
        Uint8 *raw = nullptr;
        if (bot->getUint8Array(raw).good() && raw != nullptr) {
            std::vector<Uint32> offsets(static_cast<size_t>(frames));
            for (long f = 0; f < frames; ++f) {
                offsets[f] = Uint32(raw[4 * f]) | (Uint32(raw[4 * f + 1]) << 8) | (Uint32(raw[4 * f + 2]) << 16) |
                             (Uint32(raw[4 * f + 3]) << 24);
            }
            Uint32 position = 0;
            size_t frame = 0;
            for (size_t i = 0; i < fragments.size(); ++i) {
                while (frame + 1 < offsets.size() && position >= offsets[frame + 1]) ++frame;
                append(frame, i);
                position += 8 + fragments[i].second;
            }
            return true;
        }
    }
    if (fragments.size() == static_cast<size_t>(frames)) {
        for (size_t i = 0; i < fragments.size(); ++i) append(i, i);
        return true;
    }
    if (frames == 1) {
        for (size_t i = 0; i < fragments.size(); ++i) append(0, i);
        return true;
    }
    long frame = -1;
    for (size_t i = 0; i < fragments.size(); ++i) {
        const Uint8 *d = fragments[i].first;
        bool starts = fragments[i].second >= 4 && ((d[0] == 0xFF && d[1] == 0x4F && d[2] == 0xFF && d[3] == 0x51) ||
                                                  (d[0] == 0x00 && d[1] == 0x00 && d[2] == 0x00 && d[3] == 0x0C));
        if (starts || frame < 0) ++frame;
        if (frame >= frames) {
            error = "more JPEG 2000 codestreams than frames";
            return false;
        }
        append(static_cast<size_t>(frame), i);
    }
    if (frame + 1 != frames) {
        error = "found " + std::to_string(frame + 1) + " JPEG 2000 codestreams for " + std::to_string(frames) + " frames";
        return false;
    }
    return true;
}

nnseg_dcm_status decodeJPEG2000(DcmDataset *ds, DcmPixelData *pixel, E_TransferSyntax xfer, std::vector<uint8_t> &out,
                                std::string &error) {
    DcmPixelSequence *seq = nullptr;
    if (pixel->getEncapsulatedRepresentation(xfer, nullptr, seq).bad() || seq == nullptr) {
        error = "cannot access encapsulated Pixel Data";
        return NNSEG_DCM_DECODE_FAILED;
    }
    const long frames = framesOf(ds);
    const Uint16 rows = uint16Attribute(ds, DCM_Rows, 0), cols = uint16Attribute(ds, DCM_Columns, 0);
    const Uint16 spp = uint16Attribute(ds, DCM_SamplesPerPixel, 1);
    const Uint16 bitsAllocated = uint16Attribute(ds, DCM_BitsAllocated, 0);
    if (rows == 0 || cols == 0 || (bitsAllocated != 8 && bitsAllocated != 16 && bitsAllocated != 32)) {
        error = "Rows, Columns or BitsAllocated missing or unsupported for JPEG 2000";
        return NNSEG_DCM_DECODE_FAILED;
    }
    std::vector<std::vector<uint8_t>> codestreams;
    if (!fragmentsPerFrame(seq, frames, codestreams, error)) return NNSEG_DCM_DECODE_FAILED;
    const size_t bytesPerSample = bitsAllocated / 8;
    const size_t frameBytes = size_t(rows) * cols * spp * bytesPerSample;
    out.assign(frameBytes * static_cast<size_t>(frames), 0);
    for (long f = 0; f < frames; ++f) {
        std::string frameError;
        if (!nnseg::decodeJ2KFrame(codestreams[f], rows, cols, spp, bytesPerSample, out.data() + frameBytes * f,
                                   frameError)) {
            error = "JPEG 2000 frame " + std::to_string(f) + ": " + frameError;
            return NNSEG_DCM_DECODE_FAILED;
        }
    }
    return NNSEG_DCM_OK;
}

// Reads (0002,0010) Transfer Syntax UID straight from a Part 10 meta header (always explicit VR little
// endian), for files DCMTK refuses to parse because it does not know their transfer syntax.
std::string metaTransferSyntax(const char *path) {
    FILE *fp = std::fopen(path, "rb");
    if (fp == nullptr) return "";
    std::vector<unsigned char> buf(4096);
    size_t n = std::fread(buf.data(), 1, buf.size(), fp);
    std::fclose(fp);
    size_t pos = 132;
    while (pos + 8 <= n) {
        unsigned group = buf[pos] | (buf[pos + 1] << 8), element = buf[pos + 2] | (buf[pos + 3] << 8);
        if (group != 0x0002) break;
        std::string vr(reinterpret_cast<char *>(&buf[pos + 4]), 2);
        size_t length, header;
        if (vr == "OB" || vr == "OW" || vr == "UN" || vr == "SQ" || vr == "UT") {
            if (pos + 12 > n) break;
            length = buf[pos + 8] | (buf[pos + 9] << 8) | (buf[pos + 10] << 16) | (size_t(buf[pos + 11]) << 24);
            header = 12;
        } else {
            length = buf[pos + 6] | (buf[pos + 7] << 8);
            header = 8;
        }
        if (pos + header + length > n) break;
        if (element == 0x0010) {
            std::string uid(reinterpret_cast<char *>(&buf[pos + header]), length);
            while (!uid.empty() && (uid.back() == '\0' || uid.back() == ' ')) uid.pop_back();
            return uid;
        }
        pos += header + length;
    }
    return "";
}

// Names of transfer syntaxes newer than DCMTK 3.6.7, for clearer refusals.
std::string knownName(const std::string &uid) {
    if (uid == "1.2.840.10008.1.2.4.201") return "HTJ2K Lossless";
    if (uid == "1.2.840.10008.1.2.4.202") return "HTJ2K Lossless RPCL";
    if (uid == "1.2.840.10008.1.2.4.203") return "HTJ2K";
    if (uid == "1.2.840.10008.1.2.4.110" || uid == "1.2.840.10008.1.2.4.111" || uid == "1.2.840.10008.1.2.4.112")
        return "JPEG XL";
    return "unknown";
}

}  // namespace

// Every function below is a function-try-block: no C++ exception (DCMTK, std::bad_alloc, …) crosses the
// extern "C" boundary into Swift, where it would abort the process; each returns its error value instead.
extern "C" {

void nnseg_dcm_initialize(void) try {
    static std::once_flag once;
    std::call_once(once, [] {
        OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
        DcmRLEDecoderRegistration::registerCodecs();
        DJDecoderRegistration::registerCodecs();
        DJLSDecoderRegistration::registerCodecs();
    });
} catch (...) {
}

nnseg_dcm_status nnseg_dcm_open(const char *path, nnseg_dcm_file **out, char *message, size_t message_capacity) try {
    if (path == nullptr || out == nullptr) return NNSEG_DCM_BAD_ARGUMENT;
    *out = nullptr;
    nnseg_dcm_initialize();

    unsigned char head[132] = {0};
    FILE *fp = std::fopen(path, "rb");
    if (fp == nullptr) {
        writeMessage(message, message_capacity, std::string("cannot open file: ") + std::strerror(errno));
        return NNSEG_DCM_READ_FAILED;
    }
    size_t got = std::fread(head, 1, sizeof head, fp);
    std::fclose(fp);

    bool part10 = got == 132 && std::memcmp(head + 128, "DICM", 4) == 0;
    // A raw dataset (no preamble) starts with a low group tag, little endian: group 0x0008 or 0x0002.
    bool rawDataset = !part10 && got >= 8 && (head[1] == 0x00) && (head[0] == 0x08 || head[0] == 0x02) &&
                      head[3] == 0x00;
    if (!part10 && !rawDataset) {
        writeMessage(message, message_capacity, "not a DICOM file (no DICM preamble and no recognisable dataset)");
        return NNSEG_DCM_NOT_DICOM;
    }

    auto *file = new nnseg_dcm_file();
    file->path = path;
    file->hasMeta = part10;
    OFCondition cond = file->format.loadFile(OFFilename(path), EXS_Unknown, EGL_noChange, DCM_MaxReadLength,
                                             part10 ? ERM_fileOnly : ERM_dataset);
    if (cond.bad()) {
        if (part10) {
            std::string uid = metaTransferSyntax(path);
            if (!uid.empty() && DcmXfer(uid.c_str()).getXfer() == EXS_Unknown) {
                writeMessage(message, message_capacity,
                             "transfer syntax " + uid + " (" + knownName(uid) + ") is not supported by this build");
                delete file;
                return NNSEG_DCM_UNSUPPORTED_TRANSFER_SYNTAX;
            }
        }
        delete file;
        // The stream ended inside an element (or a length points past the end): the file is cut short.
        if (part10 && (cond == EC_StreamNotifyClient || cond == EC_InvalidStream)) {
            long size = 0;
            if (FILE *f = std::fopen(path, "rb")) {
                std::fseek(f, 0, SEEK_END);
                size = std::ftell(f);
                std::fclose(f);
            }
            writeMessage(message, message_capacity,
                         "the file ends (after " + std::to_string(size) +
                             " bytes) before the data its header declares: truncated, or a corrupt element length (DCMTK: " +
                             cond.text() + ")");
            return NNSEG_DCM_TRUNCATED;
        }
        writeMessage(message, message_capacity, std::string("DCMTK cannot parse the file: ") + cond.text());
        return part10 ? NNSEG_DCM_READ_FAILED : NNSEG_DCM_NOT_DICOM;
    }
    *out = file;
    return NNSEG_DCM_OK;
} catch (...) {
    if (out != nullptr) *out = nullptr; writeMessage(message, message_capacity, "internal error while parsing (C++ exception)"); return NNSEG_DCM_READ_FAILED;
}

void nnseg_dcm_close(nnseg_dcm_file *file) { delete file; }

int nnseg_dcm_has_meta_header(const nnseg_dcm_file *file) { return file != nullptr && file->hasMeta ? 1 : 0; }

long nnseg_dcm_transfer_syntax_uid(const nnseg_dcm_file *file, char *buffer, size_t capacity) try {
    if (file == nullptr) return -1;
    auto *f = const_cast<nnseg_dcm_file *>(file);
    DcmXfer x(f->format.getDataset()->getOriginalXfer());
    return copyOut(x.getXferID(), buffer, capacity);
} catch (...) {
    return -1;
}

long nnseg_dcm_get_string(const nnseg_dcm_file *file, const char *path, char *buffer, size_t capacity) try {
    if (file == nullptr) return -1;
    std::vector<PathStep> steps;
    if (!parsePath(path, steps) || steps.back().item >= 0) return -1;
    DcmItem *parent = resolveParent(file, steps);
    if (parent == nullptr) return -1;
    DcmElement *element = nullptr;
    if (parent->findAndGetElement(steps.back().tag, element).bad() || element == nullptr) return -1;
    if (element->ident() == EVR_SQ || element->ident() == EVR_pixelSQ) return -1;
    OFString value;
    if (element->getLength() == 0) return copyOut("", buffer, capacity);
    // Numbers (DS, IS) as stored: DCMTK's per-value access counts the values again for each one, which made
    // a Contour Data of thousands of points quadratic; the caller trims each value.
    if (element->ident() == EVR_DS || element->ident() == EVR_IS) {
        char *raw = nullptr;
        Uint32 length = 0;
        auto *text = OFstatic_cast(DcmByteString *, element);
        if (text->getString(raw, length).bad()) return -1;
        return copyOut(raw == nullptr ? std::string() : std::string(raw, length), buffer, capacity);
    }
    if (element->getOFStringArray(value, OFTrue).bad()) return -1;
    return copyOut(std::string(value.c_str(), value.length()), buffer, capacity);
} catch (...) {
    return -1;
}

int nnseg_dcm_has(const nnseg_dcm_file *file, const char *path) try {
    if (file == nullptr) return 0;
    std::vector<PathStep> steps;
    if (!parsePath(path, steps) || steps.back().item >= 0) return 0;
    DcmItem *parent = resolveParent(file, steps);
    DcmElement *element = nullptr;
    return parent != nullptr && parent->findAndGetElement(steps.back().tag, element).good() && element != nullptr;
} catch (...) {
    return 0;
}

long nnseg_dcm_item_count(const nnseg_dcm_file *file, const char *path) try {
    if (file == nullptr) return -1;
    std::vector<PathStep> steps;
    if (!parsePath(path, steps) || steps.back().item >= 0) return -1;
    DcmItem *parent = resolveParent(file, steps);
    if (parent == nullptr) return -1;
    DcmSequenceOfItems *sequence = nullptr;
    if (parent->findAndGetSequence(steps.back().tag, sequence).bad() || sequence == nullptr) return -1;
    return static_cast<long>(sequence->card());
} catch (...) {
    return -1;
}

long nnseg_dcm_pixel_data_length(const nnseg_dcm_file *file) try {
    if (file == nullptr) return -1;
    auto *f = const_cast<nnseg_dcm_file *>(file);
    DcmDataset *ds = f->format.getDataset();
    DcmElement *element = nullptr;
    if (ds->findAndGetElement(DCM_PixelData, element).bad() || element == nullptr) return -1;
    if (DcmXfer(ds->getOriginalXfer()).isEncapsulated()) return -2;
    const Uint32 length = element->getLength();
    return length == DCM_UndefinedLength ? -2 : static_cast<long>(length);
} catch (...) {
    return -1;
}

nnseg_dcm_status nnseg_dcm_decode_pixels(nnseg_dcm_file *file, uint8_t **out_bytes, size_t *out_length,
                                         char *message, size_t message_capacity) try {
    if (file == nullptr || out_bytes == nullptr || out_length == nullptr) return NNSEG_DCM_BAD_ARGUMENT;
    *out_bytes = nullptr;
    *out_length = 0;
    DcmDataset *ds = file->format.getDataset();
    DcmElement *element = nullptr;
    if (ds->findAndGetElement(DCM_PixelData, element).bad() || element == nullptr) {
        writeMessage(message, message_capacity, "no Pixel Data (7FE0,0010) in this object");
        return NNSEG_DCM_NO_PIXEL_DATA;
    }
    auto *pixel = OFstatic_cast(DcmPixelData *, element);
    const E_TransferSyntax xfer = ds->getOriginalXfer();
    const Uint16 bitsAllocated = uint16Attribute(ds, DCM_BitsAllocated, 0);
    std::vector<uint8_t> decoded;
    std::string error;

    if (DcmXfer(xfer).isEncapsulated()) {
        if (isJPEG2000(xfer)) {
            nnseg_dcm_status status = decodeJPEG2000(ds, pixel, xfer, decoded, error);
            if (status != NNSEG_DCM_OK) {
                writeMessage(message, message_capacity, error);
                return status;
            }
        } else {
            OFCondition cond = ds->chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
            if (cond.bad() || !ds->canWriteXfer(EXS_LittleEndianExplicit)) {
                bool known = DcmCodecList::canChangeCoding(xfer, EXS_LittleEndianExplicit);
                writeMessage(message, message_capacity,
                             std::string(known ? "cannot decode " : "no decoder for transfer syntax ") +
                                 xferDescription(xfer) + (cond.bad() ? std::string(": ") + cond.text() : ""));
                return known ? NNSEG_DCM_DECODE_FAILED : NNSEG_DCM_UNSUPPORTED_TRANSFER_SYNTAX;
            }
        }
    }
    if (decoded.empty()) {
        // Native (or just decompressed) Pixel Data, in local (little-endian) byte order once loaded.
        const Uint32 length = pixel->getLength();
        if (length == 0 || length == DCM_UndefinedLength) {
            writeMessage(message, message_capacity, "Pixel Data is empty");
            return NNSEG_DCM_NO_PIXEL_DATA;
        }
        OFCondition cond;
        const void *data = nullptr;
        if (bitsAllocated > 8) {
            Uint16 *words = nullptr;
            cond = pixel->getUint16Array(words);
            data = words;
        } else {
            Uint8 *bytes = nullptr;
            cond = pixel->getUint8Array(bytes);
            data = bytes;
        }
        if (cond.bad() || data == nullptr) {
            writeMessage(message, message_capacity,
                         std::string("cannot load Pixel Data (file truncated?): ") + cond.text());
            return NNSEG_DCM_DECODE_FAILED;
        }
        decoded.assign(static_cast<const uint8_t *>(data), static_cast<const uint8_t *>(data) + length);
    }
    auto *buffer = static_cast<uint8_t *>(std::malloc(decoded.size()));
    if (buffer == nullptr) {
        writeMessage(message, message_capacity, "out of memory for decoded pixels");
        return NNSEG_DCM_DECODE_FAILED;
    }
    std::memcpy(buffer, decoded.data(), decoded.size());
    *out_bytes = buffer;
    *out_length = decoded.size();
    return NNSEG_DCM_OK;
} catch (...) {
    writeMessage(message, message_capacity, "internal error while decoding (C++ exception)"); return NNSEG_DCM_DECODE_FAILED;
}

void nnseg_dcm_free(void *pointer) { std::free(pointer); }

const char *nnseg_dcm_dcmtk_version(void) { return OFFIS_DCMTK_VERSION_STRING; }

nnseg_dcm_builder *nnseg_dcm_builder_create(void) try {
    nnseg_dcm_initialize();
    return new nnseg_dcm_builder();
} catch (...) {
    return nullptr;
}

void nnseg_dcm_builder_destroy(nnseg_dcm_builder *builder) { delete builder; }

namespace {
// Walks (creating) all but the last step; returns the item holding the last step.
DcmItem *createParent(nnseg_dcm_builder *builder, const std::vector<PathStep> &steps, std::string &error) {
    DcmItem *item = builder->format.getDataset();
    std::string key;
    for (size_t i = 0; i + 1 < steps.size(); ++i) {
        if (steps[i].item < 0) {
            error = "path step " + std::to_string(i) + " is a sequence without an item index";
            return nullptr;
        }
        char part[32];
        std::snprintf(part, sizeof part, "%04x,%04x[%ld]/", steps[i].tag.getGroup(), steps[i].tag.getElement(), steps[i].item);
        key += part;
        if (i < builder->lastItems.size() && builder->lastItems[i].first == key) {
            item = builder->lastItems[i].second;
            continue;
        }
        DcmItem *next = nullptr;
        DcmSequenceOfItems *sequence = nullptr;
        if (item->findAndGetSequence(steps[i].tag, sequence).good() && sequence != nullptr &&
            static_cast<unsigned long>(steps[i].item) == sequence->card()) {
            // The next item of an existing sequence: append without walking the list.
            next = new DcmItem();
            OFCondition cond = sequence->append(next);
            if (cond.bad()) {
                delete next;
                error = std::string("cannot append sequence item: ") + cond.text();
                return nullptr;
            }
        } else {
            OFCondition cond = item->findOrCreateSequenceItem(DcmTag(steps[i].tag), next, steps[i].item);
            if (cond.bad() || next == nullptr) {
                error = std::string("cannot create sequence item: ") + cond.text();
                return nullptr;
            }
        }
        builder->lastItems.resize(i);
        builder->lastItems.emplace_back(key, next);
        item = next;
    }
    return item;
}
}  // namespace

int nnseg_dcm_builder_put(nnseg_dcm_builder *builder, const char *path, const char *value, char *message, size_t message_capacity) try {
    std::vector<PathStep> steps;
    if (builder == nullptr || value == nullptr || !parsePath(path, steps) || steps.back().item >= 0) {
        writeMessage(message, message_capacity, std::string("malformed attribute path ") + (path ? path : "(null)"));
        return 1;
    }
    std::string error;
    DcmItem *parent = createParent(builder, steps, error);
    if (parent == nullptr) {
        writeMessage(message, message_capacity, std::string(path) + ": " + error);
        return 1;
    }
    DcmTag tag(steps.back().tag);
    OFCondition cond;
    if (*value == '\0') {
        cond = parent->insertEmptyElement(tag, OFTrue);
    } else {
        // Any VR: the element class parses DICOM's string form (numbers for US/SS/FL/FD/…).
        DcmElement *element = DcmItem::newDicomElement(tag.getXTag());
        if (element == nullptr) {
            cond = EC_IllegalCall;
        } else {
            cond = element->putString(value);
            if (cond.good()) cond = parent->insert(element, OFTrue);
            if (cond.bad()) delete element;
        }
    }
    if (cond.bad()) {
        writeMessage(message, message_capacity, std::string(path) + ": " + cond.text());
        return 1;
    }
    return 0;
} catch (...) {
    writeMessage(message, message_capacity, "internal error (C++ exception)"); return 1;
}

int nnseg_dcm_builder_put_sequence(nnseg_dcm_builder *builder, const char *path, char *message, size_t message_capacity) try {
    std::vector<PathStep> steps;
    if (builder == nullptr || !parsePath(path, steps) || steps.back().item >= 0) {
        writeMessage(message, message_capacity, std::string("malformed sequence path ") + (path ? path : "(null)"));
        return 1;
    }
    std::string error;
    DcmItem *parent = createParent(builder, steps, error);
    if (parent == nullptr) {
        writeMessage(message, message_capacity, std::string(path) + ": " + error);
        return 1;
    }
    DcmSequenceOfItems *sequence = nullptr;
    if (parent->findAndGetSequence(steps.back().tag, sequence).good() && sequence != nullptr) return 0;
    OFCondition cond = parent->insertEmptyElement(DcmTag(steps.back().tag), OFTrue);
    if (cond.bad()) {
        writeMessage(message, message_capacity, std::string(path) + ": " + cond.text());
        return 1;
    }
    builder->lastItems.clear();
    return 0;
} catch (...) {
    writeMessage(message, message_capacity, "internal error (C++ exception)"); return 1;
}

int nnseg_dcm_builder_put_pixel_data(nnseg_dcm_builder *builder, const uint8_t *bytes, size_t length, int bits_allocated,
                                     char *message, size_t message_capacity) try {
    if (builder == nullptr || bytes == nullptr) return 1;
    DcmDataset *ds = builder->format.getDataset();
    OFCondition cond;
    if (bits_allocated <= 8) {
        DcmPolymorphOBOW *element = new DcmPixelData(DcmTag(DCM_PixelData, EVR_OB));
        cond = element->putUint8Array(bytes, static_cast<unsigned long>(length));
        if (cond.good()) cond = ds->insert(element, OFTrue);
        else delete element;
    } else {
        std::vector<Uint16> words(length / 2);
        for (size_t i = 0; i < words.size(); ++i) words[i] = Uint16(bytes[2 * i]) | (Uint16(bytes[2 * i + 1]) << 8);
        cond = ds->putAndInsertUint16Array(DCM_PixelData, words.data(), static_cast<unsigned long>(words.size()), OFTrue);
    }
    if (cond.bad()) {
        writeMessage(message, message_capacity, std::string("Pixel Data: ") + cond.text());
        return 1;
    }
    return 0;
} catch (...) {
    writeMessage(message, message_capacity, "internal error (C++ exception)"); return 1;
}

int nnseg_dcm_builder_copy(nnseg_dcm_builder *builder, const nnseg_dcm_file *source, const char *const *tags, size_t count) try {
    if (builder == nullptr || source == nullptr) return 1;
    auto *src = const_cast<nnseg_dcm_file *>(source)->format.getDataset();
    DcmDataset *dst = builder->format.getDataset();
    builder->lastItems.clear();  // a copied element may replace a sequence whose items are cached
    for (size_t i = 0; i < count; ++i) {
        std::vector<PathStep> steps;
        if (!parsePath(tags[i], steps) || steps.size() != 1) continue;
        DcmElement *element = nullptr;
        if (src->findAndGetElement(steps[0].tag, element, OFFalse, OFTrue /* copy */).good() && element != nullptr) {
            if (dst->insert(element, OFTrue).bad()) delete element;
        }
    }
    return 0;
} catch (...) {
    return 1;
}

int nnseg_dcm_builder_save(nnseg_dcm_builder *builder, const char *path, const char *transfer_syntax, char *message,
                           size_t message_capacity) try {
    if (builder == nullptr || path == nullptr) return 1;
    E_TransferSyntax xfer = (transfer_syntax != nullptr && std::strcmp(transfer_syntax, "implicit") == 0)
                                ? EXS_LittleEndianImplicit : EXS_LittleEndianExplicit;
    std::string target(path);
    size_t slash = target.find_last_of('/');
    std::string temporary = (slash == std::string::npos ? std::string() : target.substr(0, slash + 1)) + "." +
                            target.substr(slash == std::string::npos ? 0 : slash + 1) + ".partial";
    OFCondition cond = builder->format.saveFile(OFFilename(temporary.c_str()), xfer, EET_ExplicitLength, EGL_recalcGL,
                                                EPD_noChange, 0, 0, EWM_createNewMeta);
    if (cond.bad()) {
        std::remove(temporary.c_str());
        writeMessage(message, message_capacity, std::string("cannot write: ") + cond.text());
        return 1;
    }
    if (std::rename(temporary.c_str(), path) != 0) {
        std::remove(temporary.c_str());
        writeMessage(message, message_capacity, std::string("cannot rename into place: ") + std::strerror(errno));
        return 1;
    }
    return 0;
} catch (...) {
    writeMessage(message, message_capacity, "internal error while writing (C++ exception)"); return 1;
}

long nnseg_dcm_new_uid(char *buffer, size_t capacity) try {
    char uid[100];
    dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT);
    return copyOut(uid, buffer, capacity);
} catch (...) {
    return -1;
}

}  // extern "C"
