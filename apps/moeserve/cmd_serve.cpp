#include <atomic>
#include <csignal>
#include <cstdio>
#include <pthread.h>
#include <thread>

#include "commands.h"
#include "server/api_server.h"
#include "server/serve_options.h"

namespace moeserve::cli {

int cmd_serve(int argc, char** argv) {
  const std::optional<server::ServeOptions> options = server::parse_serve_options(argc, argv);
  if (!options) return 0;  // --help
  for (const std::string& notice : options->notices) std::fprintf(stderr, "moeserve: %s\n", notice.c_str());
  // SIGINT / SIGTERM end the server cleanly: a dedicated thread waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  server::ApiServer api(*options);
  api.start();
  std::fprintf(stderr, "moeserve: listening on http://%s:%d (model loading)\n", options->host.c_str(), api.port());
  std::atomic<bool> finished{false};
  std::thread signal_thread([&api, &finished, signals] {
    int sig = 0;
    sigwait(&signals, &sig);
    if (finished) return;  // the wake-up below, not a user's signal
    std::fprintf(stderr, "moeserve: signal %d, shutting down\n", sig);
    api.stop();
  });
  const int rc = api.serve();
  // Wake the signal thread if the server stopped on its own (model failed to load).
  finished = true;
  pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
  return rc;
}

}  // namespace moeserve::cli
