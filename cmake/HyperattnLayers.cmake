# hyperattn_layer_view(<target> <PRIVATE|PUBLIC|INTERFACE> <folder>...): <target> (or, INTERFACE, its
# users) sees only the named folders of src/ (through symbolic links in
# <build>/layers/<target>.<scope>/) besides include/, so that an
# #include of a layer it must not use ("cpu/..." from src/core, "cuda/..." from src/cpu) fails to
# compile. The layers (docs/design.md): api -> core (the plan) <- cpu, cuda (the executors); io,
# model and the CLI above them.
function(hyperattn_layer_view target scope)
  set(view "${PROJECT_BINARY_DIR}/layers/${target}.${scope}")
  file(REMOVE_RECURSE "${view}")
  file(MAKE_DIRECTORY "${view}")
  foreach(folder IN LISTS ARGN)
    file(CREATE_LINK "${PROJECT_SOURCE_DIR}/src/${folder}" "${view}/${folder}" SYMBOLIC)
  endforeach()
  target_include_directories(${target} ${scope} "$<BUILD_INTERFACE:${view}>"
                             "$<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>")
endfunction()
