// No C++ exception crosses the extern "C" boundary: every entry point runs its body through `guarded`.
#pragma once
#include <cstdio>
#include <exception>

namespace nnseg {

/// Runs `body`; an exception becomes status 2 with its text in `error`.
template <typename Body> int guarded(char *error, size_t errorSize, Body body) {
    try {
        return body();
    } catch (const std::exception &e) {
        snprintf(error, errorSize, "internal error: %s", e.what());
    } catch (...) {
        snprintf(error, errorSize, "internal error");
    }
    return 2;
}

}  // namespace nnseg
