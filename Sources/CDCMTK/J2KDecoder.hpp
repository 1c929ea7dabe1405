// J2KDecoder.hpp — JPEG 2000 frame decoding with OpenJPEG (DCMTK's free build has no JPEG 2000 codec).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace nnseg {

/// Decodes one JPEG 2000 codestream (raw J2K or JP2-wrapped) into `out`: rows × cols × samples values,
/// samples interleaved, each `bytesPerSample` wide, little endian, truncated to that width (the caller
/// masks to BitsStored). Returns false with a message when the stream is corrupt or its size disagrees
/// with the header.
bool decodeJ2KFrame(const std::vector<uint8_t> &codestream, unsigned rows, unsigned cols, unsigned samples,
                    size_t bytesPerSample, uint8_t *out, std::string &error);

}  // namespace nnseg
