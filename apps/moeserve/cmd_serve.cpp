#include <atomic>
#include <csignal>
#include <cstdio>
#include <pthread.h>
#include <thread>

#include "backend/gpu_devices.h"
#include "commands.h"
#include "server/api_server.h"
#include "server/serve_options.h"

namespace moeserve::cli {

int cmd_serve(int argc, char** argv) {
  const std::optional<server::ServeOptions> options = server::parse_serve_options(argc, argv);
  if (!options) return 0;  // --help
  const bool placement_flags = options->n_gpu_layers || options->n_cpu_moe || options->cpu_moe || !options->override_tensors.empty();
  if (placement_flags) {
    const GpuDeviceList gpus = list_gpu_devices();
    // Placement flags only matter with a GPU backend; say once why they have no effect here.
    std::fprintf(stderr, "moeserve: running on the CPU (%s): -ngl / --n-cpu-moe / --cpu-moe / -ot are accepted and have no effect\n",
                 gpus.devices.empty() ? gpus.why_none.c_str() : "the CUDA backend is not available yet");
  }

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
