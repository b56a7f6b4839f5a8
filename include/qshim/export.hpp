// Symbol visibility for the public API: only QSHIM_API symbols leave libqshim.so.
#pragma once

#define QSHIM_API __attribute__((visibility("default")))
