// J2KDecoder.cpp — see J2KDecoder.hpp.
#include "J2KDecoder.hpp"

#include <openjpeg-2.5/openjpeg.h>

#include <cstring>

namespace nnseg {
namespace {

struct MemoryStream {
    const uint8_t *data;
    OPJ_SIZE_T length;
    OPJ_SIZE_T position;
};

OPJ_SIZE_T readStream(void *buffer, OPJ_SIZE_T count, void *user) {
    auto *s = static_cast<MemoryStream *>(user);
    if (s->position >= s->length) return static_cast<OPJ_SIZE_T>(-1);
    OPJ_SIZE_T n = count < s->length - s->position ? count : s->length - s->position;
    std::memcpy(buffer, s->data + s->position, n);
    s->position += n;
    return n;
}

OPJ_OFF_T skipStream(OPJ_OFF_T count, void *user) {
    auto *s = static_cast<MemoryStream *>(user);
    if (count < 0) {
        OPJ_OFF_T back = -count > static_cast<OPJ_OFF_T>(s->position) ? static_cast<OPJ_OFF_T>(s->position) : -count;
        s->position -= static_cast<OPJ_SIZE_T>(back);
        return -back;
    }
    OPJ_SIZE_T n = static_cast<OPJ_SIZE_T>(count) < s->length - s->position ? static_cast<OPJ_SIZE_T>(count)
                                                                             : s->length - s->position;
    s->position += n;
    return static_cast<OPJ_OFF_T>(n);
}

OPJ_BOOL seekStream(OPJ_OFF_T offset, void *user) {
    auto *s = static_cast<MemoryStream *>(user);
    if (offset < 0 || static_cast<OPJ_SIZE_T>(offset) > s->length) return OPJ_FALSE;
    s->position = static_cast<OPJ_SIZE_T>(offset);
    return OPJ_TRUE;
}

void collectError(const char *msg, void *user) {
    auto *error = static_cast<std::string *>(user);
    if (error->empty()) {
        *error = msg;
        while (!error->empty() && (error->back() == '\n' || error->back() == '\r')) error->pop_back();
    }
}

void ignoreMessage(const char *, void *) {}

}  // namespace

bool decodeJ2KFrame(const std::vector<uint8_t> &codestream, unsigned rows, unsigned cols, unsigned samples,
                    size_t bytesPerSample, uint8_t *out, std::string &error) {
    if (codestream.size() < 4) {
        error = "empty codestream";
        return false;
    }
    const bool jp2 = codestream[0] == 0x00 && codestream[1] == 0x00 && codestream[2] == 0x00 && codestream[3] == 0x0C;
    opj_codec_t *codec = opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K);
    std::string codecError;
    opj_set_error_handler(codec, collectError, &codecError);
    opj_set_warning_handler(codec, ignoreMessage, nullptr);
    opj_set_info_handler(codec, ignoreMessage, nullptr);
    opj_dparameters_t parameters;
    opj_set_default_decoder_parameters(&parameters);

    MemoryStream memory{codestream.data(), codestream.size(), 0};
    opj_stream_t *stream = opj_stream_create(1 << 16, OPJ_TRUE);
    opj_stream_set_user_data(stream, &memory, nullptr);
    opj_stream_set_user_data_length(stream, codestream.size());
    opj_stream_set_read_function(stream, readStream);
    opj_stream_set_skip_function(stream, skipStream);
    opj_stream_set_seek_function(stream, seekStream);

    opj_image_t *image = nullptr;
    bool ok = opj_setup_decoder(codec, &parameters) && opj_read_header(stream, codec, &image) &&
              opj_decode(codec, stream, image) && opj_end_decompress(codec, stream);
    if (!ok) {
        error = codecError.empty() ? "OpenJPEG could not decode the codestream" : "OpenJPEG: " + codecError;
    } else if (image->numcomps != samples) {
        error = "codestream has " + std::to_string(image->numcomps) + " components, header says " +
                std::to_string(samples) + " samples per pixel";
        ok = false;
    } else {
        for (unsigned c = 0; c < samples && ok; ++c) {
            const opj_image_comp_t &comp = image->comps[c];
            if (comp.w != cols || comp.h != rows || comp.data == nullptr) {
                error = "codestream size " + std::to_string(comp.w) + "x" + std::to_string(comp.h) +
                        " differs from Columns x Rows " + std::to_string(cols) + "x" + std::to_string(rows);
                ok = false;
            }
        }
    }
    if (ok) {
        const size_t pixels = size_t(rows) * cols;
        for (unsigned c = 0; c < samples; ++c) {
            const OPJ_INT32 *src = image->comps[c].data;
            for (size_t i = 0; i < pixels; ++i) {
                const uint32_t v = static_cast<uint32_t>(src[i]);
                uint8_t *dst = out + (i * samples + c) * bytesPerSample;
                for (size_t b = 0; b < bytesPerSample; ++b) dst[b] = static_cast<uint8_t>(v >> (8 * b));
            }
        }
    }
    if (image != nullptr) opj_image_destroy(image);
    opj_stream_destroy(stream);
    opj_destroy_codec(codec);
    return ok;
}

}  // namespace nnseg
