#include "core/model/vocabulary.h"

namespace magi {

std::string_view to_string(Strategy s) {
  switch (s) {
    case Strategy::magi: return "magi";
    case Strategy::ring: return "ring";
    case Strategy::ulysses: return "ulysses";
    case Strategy::allgather: return "allgather";
  }
  return "?";
}

}  // namespace magi
