// The umbrella header: everything a program linking libqshim may use.
#pragma once

#include <qshim/api.hpp>
#include <qshim/cgroups.hpp>
#include <qshim/error.hpp>
#include <qshim/fingerprint.hpp>
#include <qshim/launcher.hpp>
#include <qshim/log.hpp>
#include <qshim/placement.hpp>
#include <qshim/qmp.hpp>
#include <qshim/resources.hpp>
#include <qshim/spec.hpp>
#include <qshim/topology.hpp>
#include <qshim/vm.hpp>
