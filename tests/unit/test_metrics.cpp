// /metrics text checked with the Prometheus project's own Python parser (Debian python3-prometheus-client).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "server/metrics.h"

namespace moeserve::server {
namespace {

TEST(Metrics, ParsesWithPrometheusClient) {
  Metrics m;
  m.add_request_work(120, 0.5, 40, 2.0, 80);
  m.count_request("/v1/messages", 200);
  m.count_request("/v1/chat/completions", 400);
  m.count_prompt_cache_lookup(true);
  const std::string text = m.render({4, 1, 2, 0.25, 1024});
  const std::string path = testing::TempDir() + "metrics.txt";
  std::ofstream(path) << text;
  const std::string cmd = "/usr/bin/python3 -c '"
                          "import sys\n"
                          "from prometheus_client.parser import text_string_to_metric_families as parse\n"
                          "fams = {f.name: f for f in parse(open(sys.argv[1]).read())}\n"
                          "s = lambda n, **l: [x.value for x in fams[n].samples if all(x.labels.get(k) == v for k, v in l.items())][0]\n"
                          "print(s(\"moeserve_prompt_tokens\"), s(\"moeserve_predicted_tokens_seconds\"), s(\"moeserve_requests\", endpoint=\"/v1/chat/completions\", status=\"400\"),"
                          " s(\"moeserve_requests_processing\"), s(\"moeserve_prompt_cache_reused_tokens\"))' " +
                          path;
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[512] = {};
  const size_t n = std::fread(buf, 1, sizeof buf - 1, p);
  EXPECT_EQ(::pclose(p), 0) << text;
  EXPECT_EQ(std::string(buf, n), "120.0 20.0 1.0 1.0 80.0\n");
}

}  // namespace
}  // namespace moeserve::server
