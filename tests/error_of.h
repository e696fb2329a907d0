// error_of.h: the message of the gl::Error a callable throws ("" when it throws none), for
// tests of one-line error messages.
#pragma once
#include <string>

#include "engine/core.h"

namespace gl::testing {

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace gl::testing
