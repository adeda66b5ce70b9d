#pragma once
#include <napi.h>

namespace galette {
void RegisterObject(Napi::Env env, Napi::Object exports);
void RegisterMaps(Napi::Env env, Napi::Object exports);
void RegisterXdp(Napi::Env env, Napi::Object exports);
void RegisterPool(Napi::Env env, Napi::Object exports);
void RegisterWorkerPool(Napi::Env env, Napi::Object exports);
void RegisterTrace(Napi::Env env, Napi::Object exports);
}  // namespace galette
