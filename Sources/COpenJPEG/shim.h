#pragma once
#include <openjpeg-2.5/openjpeg.h>
