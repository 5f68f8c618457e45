// MOESERVE_PROFILE=1 on the CPU backend: when the backend closes it prints the wall time of each
// outermost op, products named by weight type, shape and column count, and an op composed of
// others (matmul_swiglu's default) counted as itself, not as its parts.
#include <cstdlib>
#include <regex>
#include <string>

#include "ops_test_util.h"

namespace moeserve::test {
namespace {

std::string profile_of_some_ops(bool requested) {
  if (requested) {
    setenv("MOESERVE_PROFILE", "1", 1);
  } else {
    unsetenv("MOESERVE_PROFILE");
  }
  testing::internal::CaptureStderr();
  {
    auto cpu = cpu_backend(2);
    const HostTensor w = random_typed(GgmlType::Q8_0, {64, 5, 1, 1}), u = random_typed(GgmlType::Q8_0, {64, 5, 1, 1});
    const HostTensor x = random_f32({64, 3, 1, 1});
    HostTensor y = HostTensor::make(GgmlType::F32, {5, 3, 1, 1}), scratch = y.clone();
    cpu->matmul(y.t, w.t, x.t);
    cpu->matmul(y.t, w.t, x.t);
    cpu->matmul_swiglu(y.t, w.t, u.t, x.t, scratch.t);
  }
  unsetenv("MOESERVE_PROFILE");
  return testing::internal::GetCapturedStderr();
}

TEST(OpTimes, CpuBackendPrintsEachOpWhenItCloses) {
  const std::string table = profile_of_some_ops(true);
  EXPECT_NE(table.find("CPU time per op"), std::string::npos) << table;
  // name, then the call count
  EXPECT_TRUE(std::regex_search(table, std::regex(R"(\nmatmul Q8_0 64x5 n=3 +2 )"))) << table;
  EXPECT_TRUE(std::regex_search(table, std::regex(R"(\nmatmul_swiglu +1 )"))) << table;
  EXPECT_EQ(table.find("\nswiglu "), std::string::npos) << "no row of the composed parts:\n" << table;
}

TEST(OpTimes, NothingPrintedUnlessRequested) { EXPECT_EQ(profile_of_some_ops(false), ""); }

}  // namespace
}  // namespace moeserve::test
