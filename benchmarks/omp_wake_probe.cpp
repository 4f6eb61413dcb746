// Idle-wake probe for the OpenMP team (issue 18 item 4; not part of the build).
//   g++ -O2 -fopenmp benchmarks/omp_wake_probe.cpp -o /tmp/wake && GOMP_SPINCOUNT=10000 /tmp/wake 50 20 9 0 1 5 20 50
// Arguments: regions R, serial gap G us between them (a Python step's overhead), repeats, then
// pauses in ms. After each pause, R regions of 2 threads (5 us of work each); per variant
// (plain; a SCHED_IDLE thread spinning during the R regions, as threads.cpp's team keeper)
// the medians over repeats of: the first region's fork-to-worker-entry delay, the median delay,
// the time per region, and how many regions had master and worker on one CPU (sched_getcpu).
#include <omp.h>
#include <sched.h>
#include <pthread.h>
#include <immintrin.h>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>
#include <algorithm>
using clk = std::chrono::steady_clock;
static double us(clk::time_point a, clk::time_point b){return std::chrono::duration<double,std::micro>(b-a).count();}
static void busy(double u){auto t=clk::now(); while(us(t,clk::now())<u){}}
static double med(std::vector<double> v){std::sort(v.begin(),v.end());return v[v.size()/2];}

std::atomic<bool> spin_on{false};
std::mutex mu; std::condition_variable cv; bool quit=false;
void spinner(){
  sched_param sp{0}; pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
  for(;;){
    { std::unique_lock<std::mutex> l(mu); cv.wait(l,[]{return spin_on.load()||quit;}); if(quit) return; }
    while(spin_on.load(std::memory_order_relaxed)) _mm_pause();
  }
}
int main(int argc,char**argv){
  int R=atoi(argv[1]); double G=atof(argv[2]); int reps=atoi(argv[3]);
  std::vector<double> pauses; for(int i=4;i<argc;i++) pauses.push_back(atof(argv[i]));
  omp_set_num_threads(2);
  std::thread sp(spinner);
  for(int i=0;i<100;i++){
#pragma omp parallel
    { busy(1); }
  }
  for(double p: pauses) for(int variant=0; variant<2; variant++){
    std::vector<double> first,total,medd; int same=0;
    for(int r=0;r<reps;r++){
      std::this_thread::sleep_for(std::chrono::microseconds((long)(p*1000)));
      if(variant){ {std::lock_guard<std::mutex> l(mu); spin_on=true;} cv.notify_one(); }
      std::vector<double> d(R);
      auto t0=clk::now();
      for(int i=0;i<R;i++){
        auto f=clk::now(); clk::time_point w; int c0=-1,c1=-2;
#pragma omp parallel
        { if(omp_get_thread_num()==1){ w=clk::now(); c1=sched_getcpu();} else c0=sched_getcpu(); busy(5); }
        d[i]=us(f,w); same+=(c0==c1);
        busy(G);
      }
      total.push_back(us(t0,clk::now())/R);
      spin_on=false;
      first.push_back(d[0]); medd.push_back(med(d));
    }
    printf("pause %5.1f ms %-8s: first %7.1f us  median wake %6.1f us  per region %7.1f us  same-cpu %d/%d\n",
           p, variant?"spinner":"plain", med(first), med(medd), med(total), same, R*reps);
  }
  {std::lock_guard<std::mutex> l(mu); quit=true;} cv.notify_one(); sp.join();
}
